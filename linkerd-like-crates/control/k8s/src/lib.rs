//! The controller's Kubernetes source.
//!
//! Watchers (kube-rs) on Services, EndpointSlices, Pods and Conduit's `ServiceProfile` CRD
//! feed a [`cluster::Cluster`], which reduces them to services, endpoints and profiles in the
//! destination index ([`conduit_control_destination::Index`]): endpoints from the slices'
//! ready (or, failing that, serving) addresses, with each pod's identity (from its service
//! account and namespace, when the pod has a proxy) and labels (pod, workload, namespace).
//!
//! - [`cluster`]: the reduction, a pure function of the objects seen, tested with typed
//!   fixtures;
//! - [`crd`]: the `ServiceProfile` resource (`conduit.io/v1alpha1`), whose CRD YAML is
//!   generated into `deploy/crds.yaml`;
//! - [`policy`]: Servers, AuthorizationPolicies (`policy.conduit.io/v1alpha1`) and pods'
//!   labels into the policy index;
//! - [`run`]: the watchers, wired to a `kube::Client`;
//! - [`TokenReviews`]: service-account tokens checked by the API server, for the identity
//!   service;
//! - [`IssuerSecret`]: the identity service's issuer, read from a Secret through the API.

#![forbid(unsafe_code)]

pub mod cluster;
pub mod crd;
mod issuer_secret;
mod objects;
pub mod policy;
mod token_review;
mod watch;

pub use self::cluster::Cluster;
pub use self::issuer_secret::{IssuerSecret, ANCHORS_KEY, CERT_KEY, KEY_KEY};
pub use self::token_review::{TokenReviews, AUDIENCE};
pub use self::watch::run;
