//! The `conduit` command line's logic, kept out of the binary so tests reach all of it.
//!
//! - [`demo`]: a whole mesh on this machine: three services, each with its own proxy, traffic
//!   between them, and a live table of their golden metrics.
//! - [`check`]: is the mesh healthy: trust anchors, issuer, controller, every meshed proxy.
//! - [`identity`]: the certificate a workload's proxy is serving.
//! - [`install`]: the control plane's Kubernetes manifests, with a trust anchor and issuer.
//! - [`issuer`]: a trust anchor, an issuer and local tokens, for running without a cluster.
//! - [`diagnostics`]: what the controller says about a name.
//! - [`viz`]: `stat`, `routes`, `edges`, `tap` and `top`, from the controller's Stats and
//!   TapByResource APIs.

#![forbid(unsafe_code)]

pub mod check;
pub mod demo;
pub mod diagnostics;
mod http;
pub mod identity;
pub mod install;
pub mod issuer;
pub mod viz;
