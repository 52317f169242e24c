use conduit_http::client::ClientConfig;
use conduit_http::server::ServerConfig;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// How one side of the proxy serves connections.
#[derive(Clone, Debug)]
pub struct Config {
    /// Bounds on protocol detection.
    pub detect: conduit_detect::Config,
    /// Destination ports carried as opaque TCP without detection.
    pub opaque_ports: Arc<HashSet<u16>>,
    /// Limits on requests served.
    pub server: ServerConfig,
    /// How endpoints are connected and pooled.
    pub client: ClientConfig,
    /// Limit on waiting for response headers, if any.
    pub response_timeout: Option<Duration>,
    /// Connections served at once.
    pub max_connections: usize,
    /// How long a per-endpoint client (or per-authority balancer) is kept unused.
    pub cache_idle: Duration,
    /// How requests wait for a service's endpoints.
    pub queue: crate::balancer::QueueConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            detect: conduit_detect::Config::default(),
            opaque_ports: Arc::default(),
            server: ServerConfig::default(),
            client: ClientConfig::default(),
            response_timeout: None,
            max_connections: 10_000,
            cache_idle: Duration::from_secs(60),
            queue: crate::balancer::QueueConfig::default(),
        }
    }
}
