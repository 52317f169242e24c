//! The shared core of the proxy's two sides.
//!
//! Inbound and outbound differ only in where a connection goes: the outbound side follows the
//! original destination (or, in explicit mode, each request's authority); the inbound side
//! hands traffic to the local application. Everything else is common and lives here:
//!
//! 1. [`serve`]: accept under a connection limit, stop accepting on drain;
//! 2. [`Connection::serve`]: count the connection, detect its protocol (unless its port is
//!    configured opaque), then either serve HTTP with `conduit_http` (HTTP/1 on hyper,
//!    HTTP/2 on `h2`) and [`HttpRouter`], or splice TCP to the destination byte for byte
//!    with half-close (balanced, and over mTLS behind a transport header between meshed
//!    proxies: see [`TransportTarget`]);
//! 3. per request: pick the endpoint (fixed per connection, or resolved per request), get its
//!    pooled client from an idle-evicting cache, forward, and record the golden metrics.

#![forbid(unsafe_code)]

pub mod authorize;
pub mod balancer;
mod config;
mod connection;
mod http_router;
mod opaque;
pub mod resolve;

pub use self::config::Config;
pub use self::connection::{Connection, Destination, Tls};
pub use self::http_router::{HttpRouter, Route};
pub use self::opaque::{loopback_for, TransportTarget};
pub use conduit_metrics::{Direction, ProxyMetrics};
pub use conduit_transport::serve;
