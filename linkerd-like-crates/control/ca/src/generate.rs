//! Generated trust anchors and issuers, for `conduit install` and `conduit demo` when the
//! operator brings none, and for tests.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use std::time::{Duration, SystemTime};

/// A certificate and its key, both PEM.
#[derive(Clone, Debug)]
pub struct CertKey {
    /// The certificate.
    pub cert_pem: String,
    /// Its PKCS#8 private key.
    pub key_pem: String,
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
#[error("could not generate a certificate: {0}")]
pub struct GenerateError(String);

fn ca_params(common_name: &str, path_len: Option<u8>, valid: Duration) -> CertificateParams {
    let now = SystemTime::now();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = match path_len {
        Some(n) => IsCa::Ca(BasicConstraints::Constrained(n)),
        None => IsCa::Ca(BasicConstraints::Unconstrained),
    };
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = (now - crate::CLOCK_SKEW).into();
    params.not_after = (now + valid).into();
    params
}

fn key() -> Result<KeyPair, GenerateError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| GenerateError(e.to_string()))
}

/// A self-signed ECDSA P-256 trust anchor, `root.<control-ns>.<trust-domain>`, valid for
/// `valid`.
pub fn trust_anchor(
    domain: &conduit_identity::Domain,
    valid: Duration,
) -> Result<CertKey, GenerateError> {
    let key = key()?;
    let name = format!("root.{}.{}", domain.control_namespace, domain.trust_domain);
    let cert = ca_params(&name, None, valid)
        .self_signed(&key)
        .map_err(|e| GenerateError(e.to_string()))?;
    Ok(CertKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// An issuer, `identity.<control-ns>.<trust-domain>`, signed by `anchor`, valid for `valid`.
pub fn issuer(
    anchor: &CertKey,
    domain: &conduit_identity::Domain,
    valid: Duration,
) -> Result<CertKey, GenerateError> {
    let anchor_key =
        KeyPair::from_pem(&anchor.key_pem).map_err(|e| GenerateError(e.to_string()))?;
    let signer = rcgen::Issuer::from_ca_cert_pem(&anchor.cert_pem, anchor_key)
        .map_err(|e| GenerateError(e.to_string()))?;
    let key = key()?;
    let name = format!(
        "identity.{}.{}",
        domain.control_namespace, domain.trust_domain
    );
    let cert = ca_params(&name, Some(0), valid)
        .signed_by(&key, &signer)
        .map_err(|e| GenerateError(e.to_string()))?;
    Ok(CertKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}
