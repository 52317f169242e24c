use crate::provider;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use std::sync::Arc;

/// Why trust anchors could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InvalidAnchors {
    /// Not PEM certificates.
    #[error("trust anchors are not PEM certificates: {0}")]
    Pem(String),
    /// PEM, but holds no certificate.
    #[error("no trust anchor certificate in the PEM")]
    Empty,
    /// A certificate rustls cannot use as an anchor.
    #[error("a trust anchor is not a usable CA certificate: {0}")]
    Certificate(rustls::Error),
    /// The verifiers could not be built.
    #[error("could not build certificate verifiers: {0}")]
    Verifier(String),
}

/// The certificates every identity in the mesh chains to, and the verifiers built on them.
#[derive(Clone, Debug)]
pub struct TrustAnchors {
    roots: Arc<RootCertStore>,
    server: Arc<WebPkiServerVerifier>,
    client: Arc<dyn ClientCertVerifier>,
}

impl TrustAnchors {
    /// Reads a PEM bundle of one or more CA certificates.
    pub fn from_pem(pem: &str) -> Result<Self, InvalidAnchors> {
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| InvalidAnchors::Pem(e.to_string()))?;
        Self::from_der(certs)
    }

    /// Takes DER CA certificates.
    pub fn from_der(certs: Vec<CertificateDer<'static>>) -> Result<Self, InvalidAnchors> {
        if certs.is_empty() {
            return Err(InvalidAnchors::Empty);
        }
        let mut roots = RootCertStore::empty();
        for cert in certs {
            roots.add(cert).map_err(InvalidAnchors::Certificate)?;
        }
        let roots = Arc::new(roots);
        let server = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| InvalidAnchors::Verifier(e.to_string()))?;
        // A client with no certificate still gets through the handshake: the port's policy
        // decides whether unauthenticated clients are allowed, and says so when refusing.
        let client = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| InvalidAnchors::Verifier(e.to_string()))?;
        Ok(Self {
            roots,
            server,
            client,
        })
    }

    /// The anchors.
    pub fn roots(&self) -> &Arc<RootCertStore> {
        &self.roots
    }

    /// Verifies a server's certificate: chained to the anchors, valid now, for its name.
    pub fn server_verifier(&self) -> &Arc<WebPkiServerVerifier> {
        &self.server
    }

    /// Verifies a client's certificate when it sends one.
    pub fn client_verifier(&self) -> &Arc<dyn ClientCertVerifier> {
        &self.client
    }
}
