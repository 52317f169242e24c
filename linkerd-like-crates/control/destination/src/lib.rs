//! The controller's service discovery: one index of services, endpoints and profiles, fed by
//! a source, and the Destination gRPC service that streams from it.
//!
//! - [`model`]: what a source knows (services, ports, endpoints).
//! - [`index::Index`]: the shared index; readers watch a name and get its latest snapshot
//!   with the change from the one before, so one computation serves every stream of a name
//!   and a slow stream never delays another.
//! - [`server::DestinationService`]: `Get` and `GetProfile` (see `proto/destination.proto`).
//! - [`file`]: the watched YAML registry (`--discovery file:PATH`).
//! - [`profile`]: profiles as people write them (shared with the `ServiceProfile` CRD).
//!
//! The Kubernetes source lives in `conduit-control-k8s`, which writes into the same index.

#![forbid(unsafe_code)]

pub mod file;
pub mod index;
pub mod model;
pub mod profile;
pub mod server;

pub use self::index::{Index, IndexStats};
pub use self::server::DestinationService;
