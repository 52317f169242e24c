//! `conduit identity <workload>`: the certificate each of a workload's proxies is serving.
//!
//! The proxies are the meshed endpoints the controller knows (its admin server's
//! `/meshed-endpoints`) whose `workload` or `pod` label, or identity, is the name given (or
//! whose identity's service account is); each is reached with a TLS handshake for its
//! identity, verified against the trust anchors the controller serves.

use crate::check::{parse_listing, served, Proxy};
use crate::http::get_text;
use conduit_identity::TrustAnchors;
use std::fmt::Write as _;
use std::time::Duration;

/// Why nothing could be shown.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The controller could not be asked.
    #[error("{0}")]
    Controller(String),
    /// No proxy matches.
    #[error("no meshed proxy of {0:?} is known to the controller (known workloads: {1})")]
    NotFound(String, String),
}

/// Whether `p` belongs to `workload`.
fn matches(p: &Proxy, workload: &str) -> bool {
    p.label("workload") == Some(workload)
        || p.label("pod") == Some(workload)
        || p.identity == workload
        || p.identity.split('.').next() == Some(workload)
}

/// The certificates `workload`'s proxies serve, described.
pub async fn show(admin: &str, workload: &str, timeout: Duration) -> Result<String, IdentityError> {
    let anchors = get_text(admin, "/identity/trust-anchors.pem")
        .await
        .map_err(IdentityError::Controller)?;
    let anchors = TrustAnchors::from_pem(&anchors)
        .map_err(|e| IdentityError::Controller(format!("the controller's trust anchors: {e}")))?;
    let listing = get_text(admin, "/meshed-endpoints")
        .await
        .map_err(IdentityError::Controller)?;
    let proxies = parse_listing(&listing);
    let mine: Vec<&Proxy> = proxies.iter().filter(|p| matches(p, workload)).collect();
    if mine.is_empty() {
        let mut known: Vec<&str> = proxies.iter().filter_map(|p| p.label("workload")).collect();
        known.sort_unstable();
        known.dedup();
        return Err(IdentityError::NotFound(workload.into(), known.join(", ")));
    }
    let mut out = String::new();
    for p in mine {
        let _ = writeln!(out, "{} {}", p.label("pod").unwrap_or("proxy"), p.addr);
        match served(p, &anchors, timeout).await {
            Ok(chain) => describe(&mut out, &chain[0]),
            Err(e) => {
                let _ = writeln!(out, "  error: {e}");
            }
        }
        out.push('\n');
    }
    Ok(out)
}

/// Subject, SANs, issuer and validity of a DER certificate.
pub fn describe(out: &mut String, der: &[u8]) {
    let cert = match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => cert,
        Err(e) => {
            let _ = writeln!(out, "  unreadable certificate: {e}");
            return;
        }
    };
    let _ = writeln!(out, "  subject:    {}", cert.subject());
    if let Ok(Some(sans)) = cert.subject_alternative_name() {
        for name in &sans.value.general_names {
            let _ = writeln!(out, "  SAN:        {name}");
        }
    }
    let _ = writeln!(out, "  issuer:     {}", cert.issuer());
    let _ = writeln!(out, "  serial:     {}", cert.raw_serial_as_string());
    let _ = writeln!(out, "  not before: {}", cert.validity().not_before);
    let _ = writeln!(out, "  not after:  {}", cert.validity().not_after);
}
