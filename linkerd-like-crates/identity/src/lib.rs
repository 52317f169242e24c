//! Workload identities and a proxy's credentials.
//!
//! An identity is a DNS-like name derived from a workload's Kubernetes service account:
//! `<sa>.<ns>.serviceaccount.identity.<control-ns>.<trust-domain>` ([`Domain::name`]); its
//! certificate also carries the SPIFFE form `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`
//! ([`Domain::spiffe_id`]). [`Name`] validates the name.
//!
//! A proxy proves its identity with [`Credentials`]: at start it makes an ECDSA P-256 key pair
//! in memory (it is never written to disk) and a CSR naming only its identity; [`certify`]
//! sends the CSR with the workload's token to the controller's Identity API, checks the
//! certificate it gets back against the [`TrustAnchors`], and renews at about 70% of its
//! lifetime, backing off on failure. `Credentials` is rustls's certificate resolver for both
//! sides of a connection, so a renewed certificate takes effect at the next handshake.
//!
//! The crypto provider is ring's ([`provider`]), chosen on purpose: see the workspace's
//! `Cargo.toml`.

#![forbid(unsafe_code)]

pub mod certify;
mod credentials;
mod name;
mod trust;

pub use self::credentials::{not_after, Credentials, CredentialsError};
pub use self::name::{Domain, InvalidName, Name, Workload};
pub use self::trust::{InvalidAnchors, TrustAnchors};

use std::sync::{Arc, OnceLock};

/// The rustls crypto provider used everywhere in Conduit: ring.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}
