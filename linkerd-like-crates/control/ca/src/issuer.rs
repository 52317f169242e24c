use conduit_identity::{Credentials, Domain, Name, TrustAnchors, Workload};
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use ring::rand::SecureRandom;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::time::{Duration, SystemTime};
use x509_parser::certificate::X509Certificate;

/// Allowance for clocks that run behind ours: a new certificate is valid from this long ago.
pub const CLOCK_SKEW: Duration = Duration::from_secs(20);

/// Why an issuer could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// A PEM input could not be read.
    #[error("{what} is not valid PEM: {reason}")]
    Pem {
        /// Which input.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A certificate could not be parsed.
    #[error("{what} could not be parsed: {reason}")]
    Certificate {
        /// Which certificate.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The issuer certificate is not a CA.
    #[error("the issuer certificate is not a CA certificate")]
    NotCa,
    /// A certificate is outside its validity period.
    #[error("{what} is not valid now (valid {not_before} to {not_after})")]
    Expired {
        /// Which certificate.
        what: &'static str,
        /// Start of validity.
        not_before: String,
        /// End of validity.
        not_after: String,
    },
    /// The issuer does not chain to any trust anchor.
    #[error("the issuer certificate is not signed by any trust anchor")]
    Unchained,
    /// The key is not the issuer certificate's.
    #[error("the issuer key does not match the issuer certificate")]
    KeyMismatch,
    /// The key could not be read.
    #[error("the issuer key is not a PKCS#8 PEM private key: {0}")]
    Key(String),
}

/// Why a CSR was refused.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    /// Not a parseable, correctly self-signed PKCS#10 request.
    #[error("the CSR is not a valid PKCS#10 request: {0}")]
    Invalid(String),
    /// Its SANs are not exactly the identity asked for.
    #[error("the CSR must carry exactly one SAN, DNS:{expected}; it carries [{found}]")]
    Sans {
        /// The identity.
        expected: Name,
        /// What it carries.
        found: String,
    },
    /// Signing failed.
    #[error("could not sign: {0}")]
    Sign(String),
}

/// A signed leaf, with the chain to send beside it.
#[derive(Clone, Debug)]
pub struct Certified {
    /// The leaf, DER.
    pub leaf: Vec<u8>,
    /// The issuer and any intermediates above it, DER, leaf-most first.
    pub intermediates: Vec<Vec<u8>>,
    /// The leaf's expiry.
    pub valid_until: SystemTime,
}

/// What `conduit check` and the logs say about an issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerInfo {
    /// The issuer certificate's subject.
    pub subject: String,
    /// When it expires.
    pub not_after: SystemTime,
    /// The earliest expiry among the trust anchors it chains to.
    pub anchor_not_after: SystemTime,
}

/// The controller's signing authority: the issuer certificate and key, checked against the
/// trust anchors when loaded.
pub struct Issuer {
    signer: rcgen::Issuer<'static, KeyPair>,
    chain: Vec<Vec<u8>>,
    anchors: Vec<Vec<u8>>,
    info: IssuerInfo,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer").field("info", &self.info).finish()
    }
}

fn certs(what: &'static str, pem: &str) -> Result<Vec<CertificateDer<'static>>, IssuerError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| IssuerError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(IssuerError::Pem {
            what,
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

fn parse<'a>(what: &'static str, der: &'a [u8]) -> Result<X509Certificate<'a>, IssuerError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| IssuerError::Certificate {
            what,
            reason: e.to_string(),
        })?;
    if !cert.validity().is_valid() {
        return Err(IssuerError::Expired {
            what,
            not_before: cert.validity().not_before.to_string(),
            not_after: cert.validity().not_after.to_string(),
        });
    }
    Ok(cert)
}

fn system_time(t: x509_parser::time::ASN1Time) -> SystemTime {
    let secs = u64::try_from(t.timestamp()).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

impl Issuer {
    /// Loads an issuer: `cert_pem` holds the issuer certificate, optionally followed by
    /// intermediates up to (not including) a trust anchor in `anchors_pem`; `key_pem` is the
    /// issuer's PKCS#8 private key. Every certificate must be valid now, each must be signed
    /// by the next, the last by an anchor, the issuer must be a CA and the key its own.
    pub fn from_pem(anchors_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self, IssuerError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| IssuerError::Key(e.to_string()))?;
        let (anchors, chain, info, spki) = check_chain_spki(anchors_pem, cert_pem)?;
        if spki != key.subject_public_key_info() {
            return Err(IssuerError::KeyMismatch);
        }
        let signer = rcgen::Issuer::from_ca_cert_der(&chain[0], key).map_err(|e| {
            IssuerError::Certificate {
                what: "the issuer certificate",
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            signer,
            chain: chain.into_iter().map(|c| c.to_vec()).collect(),
            anchors: anchors.into_iter().map(|c| c.to_vec()).collect(),
            info,
        })
    }

    /// What the issuer is and when it expires.
    pub fn info(&self) -> &IssuerInfo {
        &self.info
    }

    /// The issuer certificate and any intermediates, DER, leaf-most first.
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// The trust anchors it was loaded with, DER.
    pub fn anchors(&self) -> &[Vec<u8>] {
        &self.anchors
    }

    /// New credentials for `workload` in `domain`: a fresh key, trusting this issuer's
    /// anchors, certified now for `lifetime`; with their expiry. For holders of the issuer (the
    /// controller's own identity, benchmarks).
    pub fn issue_credentials(
        &self,
        domain: &Domain,
        workload: &Workload,
        lifetime: Duration,
    ) -> Result<(Credentials, SystemTime), String> {
        let name = domain.name(workload).map_err(|e| e.to_string())?;
        let anchors =
            TrustAnchors::from_der(self.anchors().iter().map(|a| a.clone().into()).collect())
                .map_err(|e| e.to_string())?;
        let creds = Credentials::generate(name, anchors).map_err(|e| e.to_string())?;
        let expiry = self.certify_credentials(&creds, &domain.spiffe_id(workload), lifetime)?;
        Ok((creds, expiry))
    }

    /// Signs `creds`' own CSR and installs the leaf, returning its expiry: for holders of
    /// the issuer (the controller's own identity, benchmarks), who need not ask the identity
    /// service. `spiffe_id` is the identity's URI form.
    pub fn certify_credentials(
        &self,
        creds: &Credentials,
        spiffe_id: &str,
        lifetime: Duration,
    ) -> Result<SystemTime, String> {
        let c = self
            .certify(
                creds.name(),
                spiffe_id,
                creds.csr(),
                lifetime,
                SystemTime::now(),
            )
            .map_err(|e| e.to_string())?;
        creds
            .set_certificate(c.leaf, c.intermediates)
            .map_err(|e| e.to_string())
    }

    /// Signs `csr` (DER) for `name` if it asks for exactly that name. The leaf carries `name`
    /// as its DNS SAN and `spiffe_id` as its URI SAN, is valid from [`CLOCK_SKEW`] ago for
    /// `lifetime` (never past the issuer's own expiry), and may be used by either side of a
    /// connection. Nothing but the public key is taken from the CSR.
    pub fn certify(
        &self,
        name: &Name,
        spiffe_id: &str,
        csr: &[u8],
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<Certified, CsrError> {
        let request = CertificateSigningRequestParams::from_der(&csr.into())
            .map_err(|e| CsrError::Invalid(e.to_string()))?;
        let expected = SanType::DnsName(
            name.as_str()
                .try_into()
                .map_err(|e: rcgen::Error| CsrError::Sign(e.to_string()))?,
        );
        if request.params.subject_alt_names != [expected] {
            let found = request
                .params
                .subject_alt_names
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(CsrError::Sans {
                expected: name.clone(),
                found,
            });
        }

        let valid_until = (now + lifetime).min(self.info.not_after);
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, name.as_str());
        params.subject_alt_names = vec![
            request.params.subject_alt_names[0].clone(),
            SanType::URI(
                spiffe_id
                    .try_into()
                    .map_err(|e: rcgen::Error| CsrError::Sign(e.to_string()))?,
            ),
        ];
        params.not_before = (now - CLOCK_SKEW).into();
        params.not_after = valid_until.into();
        params.serial_number = Some(serial()?);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let leaf = CertificateSigningRequestParams {
            params,
            public_key: request.public_key,
        }
        .signed_by(&self.signer)
        .map_err(|e| CsrError::Sign(e.to_string()))?;
        Ok(Certified {
            leaf: leaf.der().to_vec(),
            intermediates: self.chain.clone(),
            valid_until,
        })
    }
}

/// A random 128-bit serial number, positive as X.509 wants.
fn serial() -> Result<SerialNumber, CsrError> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CsrError::Sign("no randomness for a serial number".into()))?;
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}

type Certs = Vec<CertificateDer<'static>>;

/// Checks an issuer chain without its key (what `conduit check` can see from outside): every
/// certificate valid now, the first a CA, each signed by the next, the last by an anchor.
pub fn check_chain(
    anchors_pem: &str,
    cert_pem: &str,
) -> Result<(Certs, Certs, IssuerInfo), IssuerError> {
    check_chain_spki(anchors_pem, cert_pem).map(|(anchors, chain, info, _)| (anchors, chain, info))
}

/// [`check_chain`], with the issuer's public key (SubjectPublicKeyInfo, DER) for the key check.
fn check_chain_spki(
    anchors_pem: &str,
    cert_pem: &str,
) -> Result<(Certs, Certs, IssuerInfo, Vec<u8>), IssuerError> {
    let anchors = certs("the trust anchors", anchors_pem)?;
    let chain = certs("the issuer certificate", cert_pem)?;
    let parsed_anchors = anchors
        .iter()
        .map(|a| parse("a trust anchor", a))
        .collect::<Result<Vec<_>, _>>()?;
    let parsed_chain = chain
        .iter()
        .map(|c| parse("the issuer certificate", c))
        .collect::<Result<Vec<_>, _>>()?;
    let issuer = &parsed_chain[0];
    if !issuer.is_ca() {
        return Err(IssuerError::NotCa);
    }
    for pair in parsed_chain.windows(2) {
        pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .map_err(|_| IssuerError::Unchained)?;
    }
    let top = &parsed_chain[parsed_chain.len() - 1];
    let anchor = parsed_anchors
        .iter()
        .find(|a| a.subject() == top.issuer() && top.verify_signature(Some(a.public_key())).is_ok())
        .ok_or(IssuerError::Unchained)?;
    let info = IssuerInfo {
        subject: issuer.subject().to_string(),
        not_after: system_time(issuer.validity().not_after),
        anchor_not_after: system_time(anchor.validity().not_after),
    };
    let spki = issuer.tbs_certificate.subject_pki.raw.to_vec();
    Ok((anchors, chain, info, spki))
}

/// DER certificates as one PEM text.
pub fn to_pem(certs: &[Vec<u8>]) -> String {
    let blocks: Vec<pem::Pem> = certs
        .iter()
        .map(|der| pem::Pem::new("CERTIFICATE", der.clone()))
        .collect();
    pem::encode_many(&blocks)
}
