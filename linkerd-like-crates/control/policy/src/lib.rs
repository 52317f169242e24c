//! The controller's policy service.
//!
//! Two kinds of resource describe who may call a workload (group `policy.conduit.io` in
//! Kubernetes, or the file registry's `servers` and `authorizationPolicies`):
//!
//! - a **Server** ([`ServerSpec`]) selects pods by label and names one port and its protocol;
//! - an **AuthorizationPolicy** ([`AuthorizationPolicySpec`]) opens a Server to mTLS
//!   identities (exact or `*.<suffix>`), to networks, or to unauthenticated clients.
//!
//! [`PolicyIndex`] resolves them per pod and port (the first Server by name that selects
//! the pod, with every AuthorizationPolicy naming it; a port no Server selects gets the pod's
//! default policy, or the cluster's) and [`PolicyService`] streams each port's policy to the
//! proxy that serves it, again whenever it changes. Invalid resources are refused where they
//! are read, with a reason.

#![forbid(unsafe_code)]

pub mod file;
mod index;
mod server;
pub mod spec;

pub use self::index::{Key, PodSpec, PolicyIndex, PolicyState};
pub use self::server::PolicyService;
#[cfg(feature = "crd")]
pub use self::spec::{AuthorizationPolicy, Server};
pub use self::spec::{AuthorizationPolicySpec, NetworkSpec, ServerSpec};
