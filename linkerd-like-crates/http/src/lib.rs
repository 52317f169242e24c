//! HTTP for proxies: HTTP/1 on hyper 1, HTTP/2 on the `h2` crate directly (hyper's HTTP/2
//! layer hands every request between tasks through channels; see `h2_server` and
//! `h2_client`).
//!
//! - [`server::serve`] serves a connection whose protocol was detected (HTTP/1 or HTTP/2) with a
//!   Tower service, with header-read timeouts, header size limits and graceful drain. Requests
//!   reach the service with a [`ProxyBody`] whichever protocol carried them.
//! - [`client::NewClient`] builds a pooled client per endpoint: HTTP/1.1 keep-alive with a
//!   bounded idle pool, or one multiplexed HTTP/2 connection.
//! - [`forward::forward`] sends a request received by the server to an endpoint's client the
//!   way an intermediary must (RFC 9110 §7.6): hop-by-hop headers are dropped, `Upgrade`
//!   (WebSocket) and `CONNECT` tunnels are carried through, bodies stream in both directions
//!   and trailers (gRPC's status) pass intact.
//! - [`upgrade::on`] takes a downstream request's upgrade or `CONNECT` tunnel, from either
//!   server.
//! - [`errors`] turns a failure into a response a client can read: a status (502, 504, 400...)
//!   and a `conduit-proxy-error` header naming the cause; gRPC clients get a gRPC status.

#![forbid(unsafe_code)]

pub mod body;
pub mod client;
mod deadline;
pub mod errors;
pub mod forward;
mod h2_body;
mod h2_client;
mod h2_server;
pub mod headers;
mod idle;
pub mod server;
pub mod upgrade;

pub use self::body::ProxyBody;
pub use self::deadline::Deadline;
pub use self::errors::{ErrorStatus, ResponseTimeout, PROXY_ERROR_HEADER};
pub use self::h2_body::RecvBody;
pub use hyper::body::Incoming;

pub use conduit_detect::Http;
