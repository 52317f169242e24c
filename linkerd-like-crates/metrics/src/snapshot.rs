//! Plain copies of the metrics, for the controller's aggregation (see `proto/stats.proto`).

use crate::{DestinationLabels, Direction, TlsLabel};
use std::sync::Arc;

/// The responses of one label set, counted since the proxy started.
#[derive(Clone, Debug, PartialEq)]
pub struct ResponseSnapshot {
    /// Inbound or outbound.
    pub direction: Direction,
    /// The request's authority, when it had one.
    pub authority: Option<String>,
    /// The connection's TLS and peer identity.
    pub tls: TlsLabel,
    /// The HTTP status.
    pub status: u16,
    /// Whether the responses were classified successes.
    pub success: bool,
    /// The profile route, when one matched.
    pub route: Option<Arc<str>>,
    /// The endpoint's labels, when the controller named them.
    pub dst: Option<DestinationLabels>,
    /// Responses counted.
    pub count: u64,
    /// Their latencies: `(microseconds, count)` per HDR bucket (see [`crate::HdrLatency`]).
    pub latency_us: Vec<(u64, u64)>,
}

/// The connections of one TCP label set.
#[derive(Clone, Debug, PartialEq)]
pub struct TcpSnapshot {
    /// Inbound or outbound.
    pub direction: Direction,
    /// Accepted (`true`) or opened by the proxy.
    pub accepted: bool,
    /// The connection's TLS and peer identity.
    pub tls: TlsLabel,
    /// Open now.
    pub open: u64,
    /// Opened since the proxy started.
    pub opened: u64,
}
