//! Conduit's control-plane APIs, generated from the `.proto` files in `proto/` (the one source
//! of truth for the wire) by prost and tonic at build time, with protox as a pure-Rust
//! protobuf compiler, so no system `protoc` is needed.
//!
//! - [`destination`]: endpoints and profiles of services (`Get`, `GetProfile`); the stream
//!   semantics are documented in `proto/destination.proto`.
//! - [`identity`]: certificates for workload identities (`Certify`).
//! - [`policy`]: inbound authorization per port (`WatchPort`).
//! - [`tap`]: live requests from a proxy (`Tap.Observe`) and merged by the controller
//!   (`TapByResource.Watch`).
//! - [`stats`]: a proxy's counts and latency histograms (`ProxyStats.Get`) and the
//!   controller's aggregates of them (`Stats`).
//!
//! Besides the generated types, [`addr`] converts between the wire's addresses and std's.

#![forbid(unsafe_code)]

pub mod addr;

/// The Destination API (`proto/destination.proto`).
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    missing_debug_implementations
)]
pub mod destination {
    tonic::include_proto!("conduit.destination");
}

/// The Identity API (`proto/identity.proto`).
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    missing_debug_implementations
)]
pub mod identity {
    tonic::include_proto!("conduit.identity");
}

/// The Policy API (`proto/policy.proto`).
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    missing_debug_implementations
)]
pub mod policy {
    tonic::include_proto!("conduit.policy");
}

/// The Tap API (`proto/tap.proto`).
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    missing_debug_implementations
)]
pub mod tap {
    tonic::include_proto!("conduit.tap");
}

/// The Stats API (`proto/stats.proto`).
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    missing_debug_implementations
)]
pub mod stats {
    tonic::include_proto!("conduit.stats");
}
