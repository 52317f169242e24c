//! Golden metrics: requests, success, latency, and bytes, per direction and destination.
//!
//! Names and labels follow Linkerd's proxy so existing dashboards and queries work:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `request_total` | counter | `direction`, `authority`, `target_addr`, `tls` (+ `client_id`) |
//! | `response_total` | counter | the above + `status_code`, `classification`, `route`; `server_id` for responses over outbound mTLS; `dst_*` for the endpoint's labels (`dst_service`, `dst_namespace`, `dst_workload`, `dst_pod`) when the controller named them |
//! | `response_latency_ms` | histogram | the above |
//! | `tcp_open_total`, `tcp_close_total` | counter | `direction`, `peer`, `target_addr`, `tls` (+ `client_id` or `server_id`) |
//! | `tcp_open_connections` | gauge | same |
//! | `tcp_read_bytes_total`, `tcp_write_bytes_total` | counter | same |
//!
//! Refusals by inbound policy are `inbound_http_authz_deny_total` and
//! `inbound_tcp_authz_deny_total` (labels `srv_name`, `target_addr`, `reason`).
//!
//! A proxy with an identity also reports `identity_cert_expiration_timestamp_seconds`.
//!
//! The `tls` label and its identities are described at [`TlsLabel`].
//!
//! `response_latency_ms` is the time from the request reaching the proxy to the response's
//! headers (close to time-to-first-byte), in Linkerd's millisecond buckets. A response is
//! classified when its stream ends: `failure` for a 5xx status, a non-zero `grpc-status`
//! (in headers or trailers) or a stream that errored; `success` otherwise. A profile route's
//! response classes, when one matches the status, decide instead ([`ResponseClass`]).
//!
//! Each response label set also keeps its latencies in an HDR histogram (microseconds, 2
//! significant figures), which [`HttpMetrics::snapshot`] hands to the controller for exact
//! percentiles.
//!
//! The hot path costs one map lookup under a read lock per request and per response, then
//! atomic adds. Label sets live for the life of the process, as in Prometheus clients.
//!
//! Prometheus' linter flags the `_ms` suffix as an abbreviated unit; it is kept on purpose,
//! for compatibility with Linkerd's dashboards. Everything else passes `promtool check metrics`.

#![forbid(unsafe_code)]

mod authz;
mod dst;
mod family;
mod http_metrics;
mod latency;
mod prom;
mod snapshot;
mod tcp;
mod tls;
mod value;

pub use self::authz::AuthzMetrics;
pub use self::dst::DestinationLabels;
pub use self::family::Family;
pub use self::http_metrics::{
    HttpMetrics, HttpMetricsLayer, HttpMetricsService, HttpTarget, ResponseBody, ResponseClass,
    ResponseFuture, RouteLabel, MAX_AUTHORITIES,
};
pub use self::latency::{HdrLatency, LATENCY_SIGFIG};
pub use self::prom::{escape_label_value, EncodeLabels, Encoder};
pub use self::snapshot::{ResponseSnapshot, TcpSnapshot};
pub use self::tcp::{Peer, PendingTcp, TcpConnection, TcpLabels, TcpMetrics};
pub use self::tls::{ServerIdLabel, TlsLabel};
pub use self::value::{Counter, Gauge, Histogram, LATENCY_BOUNDS_MS};

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Which way traffic flows through the proxy.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Into the workload.
    Inbound,
    /// Out of the workload.
    Outbound,
}

impl Direction {
    /// The label value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every metric a proxy keeps.
#[derive(Clone, Debug, Default)]
pub struct ProxyMetrics {
    /// HTTP request metrics.
    pub http: HttpMetrics,
    /// TCP connection metrics.
    pub tcp: TcpMetrics,
    /// Refusals by inbound policy.
    pub authz: AuthzMetrics,
    /// When the proxy's certificate expires, in seconds since the epoch; 0 before it has one.
    pub cert_expiry: Arc<AtomicU64>,
}

impl ProxyMetrics {
    /// Renders every metric as Prometheus text.
    pub fn encode(&self) -> String {
        let mut enc = Encoder::default();
        self.http.encode(&mut enc);
        self.tcp.encode(&mut enc);
        self.authz.encode(&mut enc);
        let expiry = self.cert_expiry.load(Ordering::Relaxed);
        if expiry > 0 {
            enc.gauge_value(
                "identity_cert_expiration_timestamp_seconds",
                "Time when this proxy's current mTLS identity certificate expires, in seconds since the Unix epoch.",
                expiry as f64,
            );
        }
        enc.finish()
    }
}
