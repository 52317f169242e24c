//! The controller's identity service: a certificate authority for the mesh.
//!
//! A proxy sends a CSR for its identity with a token proving that identity
//! (`proto/identity.proto`). [`IdentityService`] checks, in order:
//!
//! 1. the identity is a workload identity of this trust domain (else `INVALID_ARGUMENT`);
//! 2. the token is valid ([`TokenVerifier`]: a Kubernetes TokenReview, or [`LocalTokens`]
//!    without a cluster) (else `UNAUTHENTICATED`) and proves that very workload (else
//!    `PERMISSION_DENIED`);
//! 3. the CSR is a correctly self-signed PKCS#10 request whose only SAN is the identity
//!    (else `INVALID_ARGUMENT`);
//!
//! then [`Issuer::certify`] signs a leaf with only the CSR's public key taken from it: the
//! identity as DNS SAN and its SPIFFE ID as URI SAN, valid from a clock-skew allowance ago for
//! the configured lifetime (never past the issuer's expiry), for both server and client use.
//!
//! The issuer (certificate and PKCS#8 key, ECDSA P-256) and the trust anchors come from files
//! ([`IssuerFiles`]) or a Kubernetes Secret read through the API, both through [`watch_issuer`]
//! (reloaded when they change, no restart);
//! each load checks that the issuer is a CA, valid now, holds the matching key and chains to
//! an anchor, and a broken change keeps the last good issuer. [`generate`] makes anchors and
//! issuers for `conduit install` and `conduit demo`.

#![forbid(unsafe_code)]

pub mod generate;
mod issuer;
mod service;
mod source;
mod token;

pub use self::issuer::{
    check_chain, to_pem, Certified, CsrError, Issuer, IssuerError, IssuerInfo, CLOCK_SKEW,
};
pub use self::service::IdentityService;
pub use self::source::{watch_issuer, IssuerFiles, IssuerPem, IssuerSource, SourceError};
pub use self::token::{LocalTokens, TokenError, TokenVerifier};
