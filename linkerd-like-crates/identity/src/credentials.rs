use crate::{provider, Name, TrustAnchors};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::sign::{CertifiedKey, SigningKey};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// Why credentials could not be made or a certificate not taken.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The key or CSR could not be made.
    #[error("could not make a key and CSR: {0}")]
    Key(String),
    /// The certificate is not for our key.
    #[error("the certificate is not for this proxy's key: {0}")]
    KeyMismatch(rustls::Error),
    /// The certificate does not chain to the trust anchors, has expired, or names someone else.
    #[error("the certificate is not valid for {name}: {error}")]
    Invalid {
        /// Our name.
        name: Name,
        /// What is wrong.
        error: rustls::Error,
    },
    /// The certificate could not be read.
    #[error("the certificate could not be parsed: {0}")]
    Parse(String),
}

/// A proxy's identity: its name, a key pair made in memory (never written anywhere), the CSR
/// for it, and the certificate it has now, if any.
///
/// Implements rustls's client and server certificate resolvers, so TLS configurations are
/// built once and a renewed certificate is used by the next handshake with no rebuild.
#[derive(Debug)]
pub struct Credentials {
    name: Name,
    key: Arc<dyn SigningKey>,
    csr: Vec<u8>,
    anchors: TrustAnchors,
    current: RwLock<Option<Arc<CertifiedKey>>>,
    expiry: watch::Sender<Option<SystemTime>>,
}

impl Credentials {
    /// Makes an ECDSA P-256 key pair and a CSR whose only SAN is `name`.
    pub fn generate(name: Name, anchors: TrustAnchors) -> Result<Self, CredentialsError> {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CredentialsError::Key(e.to_string()))?;
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()])
            .map_err(|e| CredentialsError::Key(e.to_string()))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name.as_str());
        let csr = params
            .serialize_request(&key_pair)
            .map_err(|e| CredentialsError::Key(e.to_string()))?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
        let key = provider()
            .key_provider
            .load_private_key(der)
            .map_err(|e| CredentialsError::Key(e.to_string()))?;
        Ok(Self {
            name,
            key,
            csr: csr.der().to_vec(),
            anchors,
            current: RwLock::new(None),
            expiry: watch::channel(None).0,
        })
    }

    /// Our identity.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The trust anchors peers' certificates must chain to.
    pub fn anchors(&self) -> &TrustAnchors {
        &self.anchors
    }

    /// The CSR, DER-encoded.
    pub fn csr(&self) -> &[u8] {
        &self.csr
    }

    /// Takes a certificate from the controller once it is checked: it must be for our key,
    /// chain to the trust anchors through `intermediates`, name us, and be valid now. Returns
    /// its expiry.
    pub fn set_certificate(
        &self,
        leaf: Vec<u8>,
        intermediates: Vec<Vec<u8>>,
    ) -> Result<SystemTime, CredentialsError> {
        let mut chain = vec![CertificateDer::from(leaf)];
        chain.extend(intermediates.into_iter().map(CertificateDer::from));
        let certified = CertifiedKey::new(chain, self.key.clone());
        certified
            .keys_match()
            .map_err(CredentialsError::KeyMismatch)?;
        let server_name = ServerName::try_from(self.name.to_string()).map_err(|e| {
            CredentialsError::Parse(format!("{} is not a server name: {e}", self.name))
        })?;
        self.anchors
            .server_verifier()
            .verify_server_cert(
                &certified.cert[0],
                &certified.cert[1..],
                &server_name,
                &[],
                UnixTime::now(),
            )
            .map_err(|error| CredentialsError::Invalid {
                name: self.name.clone(),
                error,
            })?;
        let expiry = not_after(&certified.cert[0])?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(certified));
        self.expiry.send_replace(Some(expiry));
        Ok(expiry)
    }

    /// The certificate and key served now.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current certificate's expiry; changes with each new certificate. `None` until
    /// the first: a proxy is not ready before it.
    pub fn expiry(&self) -> watch::Receiver<Option<SystemTime>> {
        self.expiry.subscribe()
    }
}

/// When `cert` expires.
pub fn not_after(cert: &[u8]) -> Result<SystemTime, CredentialsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| CredentialsError::Parse(e.to_string()))?;
    let secs = parsed.validity().not_after.timestamp();
    let secs = u64::try_from(secs)
        .map_err(|_| CredentialsError::Parse(format!("expiry {secs} is before 1970")))?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

impl rustls::server::ResolvesServerCert for Credentials {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

impl rustls::client::ResolvesClientCert for Credentials {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}
