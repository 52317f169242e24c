//! The controller's observability APIs (`proto/tap.proto`, `proto/stats.proto`).
//!
//! - [`TapService`] (`TapByResource.Watch`): a resource's meshed proxies are found in the
//!   index (pod IP and tap port of each endpoint with an identity), tapped over mTLS as the
//!   controller, and their events merged, each marked with its proxy.
//! - [`StatsService`] (`Stats`): golden metrics per workload, pod, service, namespace, route
//!   and edge. Proxies are *pulled*: every `interval` (default 10 s) the [`Collector`] asks
//!   each meshed proxy for its counts and HDR latency histograms (`ProxyStats.Get`, on the
//!   tap port). Pulling keeps proxies stateless towards the controller (a controller that
//!   restarts or scales loses nothing a proxy holds) and reuses tap's mTLS channel and
//!   authorization, at the cost of a window's resolution being the interval.
//!
//! - [`Dashboard`]: the web dashboard on `:8084`, over both.
//!
//! A window's figures are the difference between each proxy's newest answer and its answer a
//! window before: counts are exact, rates are counts over the real time between the two
//! answers, and percentiles come from the merged histogram's buckets, exact to within the
//! proxies' 1% (two significant figures), never interpolated.
//!
//! Which side counts:
//! - a workload, pod or namespace: its own proxies' inbound responses (the server's view),
//!   and its inbound TCP connections;
//! - a service: its clients' outbound responses to its endpoints (the `dst_service` the
//!   controller labelled them with);
//! - `--to R`: the resource's outbound responses to R's endpoints; `--from R`: R's outbound
//!   responses to the resource;
//! - routes: the service's clients' outbound responses, by the profile route they matched;
//! - edges: each proxy's outbound responses by destination workload, with the identities of
//!   both sides when the connection was mTLS.
//!
//! Responses of meshed clients to unmeshed servers count on the client side only, and
//! unmeshed clients' requests only on the server side, as in Linkerd.

#![forbid(unsafe_code)]

mod collector;
mod dashboard;
pub mod json;
mod proxies;
pub mod query;
mod resource;
mod stats;
mod tap;
pub mod window;

pub use self::collector::{Collector, MAX_WINDOW};
pub use self::dashboard::Dashboard;
pub use self::proxies::{ClientError, Clients, Proxy};
pub use self::query::DEFAULT_ROUTE;
pub use self::resource::{InvalidResource, Kind, Resource};
pub use self::stats::{StatsService, DEFAULT_WINDOW};
pub use self::tap::TapService;
