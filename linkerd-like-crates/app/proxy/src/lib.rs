//! `conduit-proxy`: the sidecar, assembled.
//!
//! [`Proxy::bind`] opens the outbound, inbound and admin listeners (so a bad address fails
//! at start-up, naming it); [`Bound::run`] serves them until a shutdown is asked for, by
//! signal or by `POST /shutdown`, then stops accepting, lets in-flight requests finish within
//! the grace period, and returns.
//!
//! # Configuration
//!
//! Every setting is an environment variable; a bad value stops start-up with a message that
//! names the variable and what was expected. Durations read like `500ms`, `10s`, `1m`.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR` | `127.0.0.1:4140` | where the application's redirected (or explicit-proxy) connections arrive |
//! | `CONDUIT_PROXY_INBOUND_LISTEN_ADDR` | `0.0.0.0:4143` | where connections to the workload arrive |
//! | `CONDUIT_PROXY_INBOUND_FORWARD_ADDR` | unset | where direct (not redirected) inbound connections go |
//! | `CONDUIT_PROXY_ADMIN_LISTEN_ADDR` | `127.0.0.1:4191` | the admin server |
//! | `CONDUIT_PROXY_TAP_LISTEN_ADDR` | `0.0.0.0:4190` | the tap port: live taps (`Tap`) and golden metrics with HDR latencies (`ProxyStats`), over mTLS, to the controller's identity only; with an identity only |
//! | `CONDUIT_PROXY_WORKLOAD_LABELS` | unset | this workload's labels, `namespace=demo,workload=web,pod=web-1`: tap events carry them and tap filters match them |
//! | `CONDUIT_PROXY_OPAQUE_PORTS` | `25,587,3306,4444,5432,6379,9300,11211` | destination ports carried as TCP without detection (ranges like `8000-8010` allowed) |
//! | `CONDUIT_PROXY_DETECT_TIMEOUT` | `10s` | how long to wait for a client's first bytes before treating it as TCP |
//! | `CONDUIT_PROXY_DETECT_MAX_BYTES` | `8192` | how many bytes detection reads at most |
//! | `CONDUIT_PROXY_CONNECT_TIMEOUT` | `1s` | limit on connecting upstream (then 504) |
//! | `CONDUIT_PROXY_RESPONSE_TIMEOUT` | unset | limit on waiting for response headers (then 504) |
//! | `CONDUIT_PROXY_HTTP_HEADER_READ_TIMEOUT` | `10s` | limit on receiving a request's head (slowloris guard; then 408) |
//! | `CONDUIT_PROXY_HTTP_MAX_HEADER_BYTES` | `65536` | largest request head (then 431) |
//! | `CONDUIT_PROXY_POOL_IDLE_TIMEOUT` | `20s` | an upstream HTTP/1.1 connection left idle this long is closed |
//! | `CONDUIT_PROXY_POOL_MAX_IDLE` | `64` | idle upstream connections kept per endpoint |
//! | `CONDUIT_PROXY_MAX_CONNECTIONS` | `10000` | connections served at once per side; more wait in the backlog |
//! | `CONDUIT_PROXY_SHUTDOWN_GRACE_PERIOD` | `30s` | time in-flight work gets after a shutdown begins |
//! | `CONDUIT_PROXY_LOG` | `info` | log filter (`warn,conduit=debug`...), changeable at `/proxy-log-level` |
//! | `CONDUIT_PROXY_CORES` | `1` | worker threads |
//! | `CONDUIT_PROXY_DESTINATION_SVC_ADDR` | unset | the controller's gRPC API (`host:port`); unset runs standalone: original destinations and DNS |
//! | `CONDUIT_PROXY_DESTINATION_CONTEXT` | empty | who this proxy is to the controller (for example `ns:demo`) |
//! | `CONDUIT_PROXY_BALANCER_QUEUE_TIMEOUT` | `3s` | how long a request waits for a service with no endpoints (then 503) |
//! | `CONDUIT_PROXY_BALANCER_QUEUE_CAPACITY` | `1024` | requests that may wait per service; more get 503 at once |
//! | `CONDUIT_PROXY_IDENTITY_LOCAL_NAME` | unset | this proxy's identity (`<sa>.<ns>.serviceaccount.identity.<control-ns>.<trust-domain>`); set, it turns mTLS on |
//! | `CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS` | required with an identity | PEM text of the mesh's trust anchors |
//! | `CONDUIT_PROXY_IDENTITY_TOKEN_FILE` | `/var/run/secrets/tokens/conduit-identity-token` | the token proving the identity, re-read at each renewal |
//! | `CONDUIT_PROXY_IDENTITY_SVC_ADDR` | `CONDUIT_PROXY_DESTINATION_SVC_ADDR` | the controller's Identity API (`host:port`) |
//! | `CONDUIT_PROXY_CONTROLLER_NAME` | `conduit-controller.<control-ns>.serviceaccount.identity.<control-ns>.<trust-domain>` of the proxy's own mesh | the identity the controller must present: with an identity, every controller API is reached over TLS |
//! | `CONDUIT_PROXY_POLICY_WORKLOAD` | unset | `<namespace>:<pod>`: follow this pod's inbound policies from the controller |
//! | `CONDUIT_PROXY_INBOUND_PORTS` | unset | the workload's ports (`7001,9090-9091`), whose policies are fetched at start |
//! | `CONDUIT_PROXY_DEFAULT_INBOUND_POLICY` | `all-unauthenticated` | what ports no Server describes allow (and every port until the controller answers): `all-unauthenticated`, `all-authenticated`, `cluster-unauthenticated`, `cluster-authenticated`, `deny` |
//! | `CONDUIT_PROXY_POLICY_CLUSTER_NETWORKS` | `10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16` | the cluster's networks, for the `cluster-*` defaults |
//!
//! # Identity
//!
//! With an identity, the proxy makes an ECDSA P-256 key in memory at start (it is never
//! written anywhere), asks the controller to certify it with the token, and renews at about
//! 70% of each certificate's lifetime, backing off on failure. `/ready` answers 503 until the
//! first certificate arrives; `identity_cert_expiration_timestamp_seconds` gives its expiry.
//! Endpoints the controller names with an identity are then reached over mTLS (HTTP/2
//! between the proxies), and inbound mTLS for this proxy's identity is terminated, so the
//! client's identity labels the metrics (`tls="true",client_id=...`).
//!
//! # Inbound policy
//!
//! Each inbound port's policy (from the controller for `CONDUIT_PROXY_POLICY_WORKLOAD`, else
//! the default) is checked for every HTTP request (refused: 403 with
//! `conduit-proxy-error: unauthorized: ...`, or gRPC `PERMISSION_DENIED`) and every opaque
//! connection (refused: closed). Refusals are counted by server and reason in
//! `inbound_http_authz_deny_total` and `inbound_tcp_authz_deny_total`. A policy change
//! applies to the next request.
//!
//! # Memory allocator
//!
//! Unless `GLIBC_TUNABLES` is set, the binary executes itself once at start with
//! `GLIBC_TUNABLES=glibc.malloc.tcache_count=32`, which spares glibc's allocator some slow
//! paths under load; see [`malloc`]. Set `GLIBC_TUNABLES` (to anything) to choose otherwise.

#![forbid(unsafe_code)]

pub mod config;
pub mod malloc;

mod stats;
mod tap;
pub use conduit_app_admin::{shutdown_signal, trace};

pub use self::config::{Config, ConfigError, DestinationConfig, IdentityConfig, PolicyConfig};
pub use conduit_app_admin::LogLevel;
pub use conduit_app_core::resolve;

use conduit_api::identity::identity_client::IdentityClient;
use conduit_app_admin::Admin;
use conduit_app_core::authorize::PortPolicies;
use conduit_app_core::resolve::Resolve;
use conduit_app_core::Tls;
use conduit_app_inbound::Inbound;
use conduit_app_outbound::Outbound;
use conduit_identity::Credentials;
use conduit_metrics::ProxyMetrics;
use conduit_policy::DefaultPolicy;
use conduit_stack::drain;
use conduit_tap::{TapServer, Taps};
use conduit_tls::{ClientTls, ServerTls};
use conduit_transport::Listener;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be opened.
    #[error("cannot listen on {addr} ({var}): {source}")]
    Bind {
        /// The variable that configures the address.
        var: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The identity (key, CSR, TLS configuration) could not be set up.
    #[error("identity: {0}")]
    Identity(String),
}

/// The proxy, before its listeners are bound.
#[derive(Debug)]
pub struct Proxy;

/// The proxy with its listeners bound.
pub struct Bound {
    config: Config,
    outbound: Listener,
    inbound: Listener,
    admin: Listener,
    /// Bound only with an identity: tap is served over mTLS.
    tap: Option<Listener>,
    taps: Taps,
    metrics: ProxyMetrics,
    resolve: Arc<dyn Resolve>,
    log_level: Arc<dyn LogLevel>,
    identity: Option<(Arc<Credentials>, Tls)>,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("outbound", &self.outbound.local_addr())
            .field("inbound", &self.inbound.local_addr())
            .field("admin", &self.admin.local_addr())
            .finish()
    }
}

fn bind(var: &'static str, addr: SocketAddr) -> Result<Listener, StartError> {
    conduit_transport::bind(addr).map_err(|source| StartError::Bind { var, addr, source })
}

/// The proxy's key, CSR and TLS configurations, when it has an identity.
fn identity(config: &Config) -> Result<Option<(Arc<Credentials>, Tls)>, StartError> {
    let Some(id) = &config.identity else {
        return Ok(None);
    };
    let credentials = Arc::new(
        Credentials::generate(id.name.clone(), id.trust_anchors.clone())
            .map_err(|e| StartError::Identity(e.to_string()))?,
    );
    let tls = Tls {
        client: ClientTls::new(credentials.clone())
            .map_err(|e| StartError::Identity(e.to_string()))?,
        server: ServerTls::new(credentials.clone())
            .map_err(|e| StartError::Identity(e.to_string()))?,
    };
    Ok(Some((credentials, tls)))
}

impl Proxy {
    /// Binds the listeners `config` names. Names are resolved with `resolve` in explicit
    /// mode; `log_level` backs `/proxy-log-level`.
    pub fn bind(
        config: Config,
        resolve: Arc<dyn Resolve>,
        log_level: Arc<dyn LogLevel>,
    ) -> Result<Bound, StartError> {
        let identity = identity(&config)?;
        let outbound = bind("CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR", config.outbound_listen)?;
        let inbound = bind("CONDUIT_PROXY_INBOUND_LISTEN_ADDR", config.inbound_listen)?;
        let admin = bind("CONDUIT_PROXY_ADMIN_LISTEN_ADDR", config.admin_listen)?;
        let tap = match identity {
            Some(_) => Some(bind("CONDUIT_PROXY_TAP_LISTEN_ADDR", config.tap_listen)?),
            None => None,
        };
        conduit_app_admin::mark_start();
        Ok(Bound {
            config,
            outbound,
            inbound,
            admin,
            tap,
            taps: Taps::new(),
            metrics: ProxyMetrics::default(),
            resolve,
            log_level,
            identity,
        })
    }
}

impl Bound {
    /// The outbound listener's address.
    pub fn outbound_addr(&self) -> SocketAddr {
        self.outbound.local_addr()
    }

    /// The inbound listener's address.
    pub fn inbound_addr(&self) -> SocketAddr {
        self.inbound.local_addr()
    }

    /// The admin server's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr()
    }

    /// The tap server's address, when it has one (with an identity).
    pub fn tap_addr(&self) -> Option<SocketAddr> {
        self.tap.as_ref().map(Listener::local_addr)
    }

    /// The proxy's metrics.
    pub fn metrics(&self) -> &ProxyMetrics {
        &self.metrics
    }

    /// Serves until `shutdown` completes or `/shutdown` is called, then drains within the
    /// grace period. Returns `true` if every connection finished in time.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> bool {
        let (signal, watch) = drain::channel();
        let admin_shutdown = Arc::new(tokio::sync::Notify::new());
        let side = self.config.side.clone();
        // With an identity, every API of the controller is reached over TLS to its identity.
        let controller_tls = match (&self.identity, &self.config.identity) {
            (Some((_, tls)), Some(id)) => Some((tls.client.clone(), id.controller_name.clone())),
            _ => None,
        };
        let discovery = match &self.config.destination {
            Some(d) => match conduit_discovery::channel(&d.addr, controller_tls.clone()) {
                Ok(channel) => Some(conduit_discovery::Discovery::from_channel(
                    channel,
                    d.context.clone(),
                )),
                Err(error) => {
                    // Validated at start-up; a failure here is a bug, not a configuration.
                    tracing::error!(%error, "running without the controller");
                    None
                }
            },
            None => None,
        };
        let tls = self.identity.as_ref().map(|(_, tls)| tls.clone());
        let policies = self.port_policies(discovery.clone());
        let mut proxy_ports = vec![
            self.outbound_addr().port(),
            self.inbound_addr().port(),
            self.admin_addr().port(),
        ];
        proxy_ports.extend(self.tap_addr().map(|a| a.port()));
        let labels = self.config.workload_labels.clone();
        let outbound = Outbound::new(
            side.clone(),
            self.metrics.clone(),
            self.resolve,
            discovery,
            tls.clone(),
        )
        .with_taps(self.taps.clone(), labels.clone());
        let inbound = Inbound::new(
            side,
            self.metrics.clone(),
            self.config.inbound_forward,
            tls.clone(),
            policies,
        )
        .with_proxy_ports(&proxy_ports)
        .with_taps(self.taps.clone(), labels);
        if let (Some(listener), Some(tls), Some(id)) = (self.tap, &tls, &self.config.identity) {
            let server = TapServer::new(self.taps.clone(), id.controller_name.as_str());
            let stats = stats::ProxyStatsServer::new(
                self.metrics.clone(),
                self.config.workload_labels.as_deref(),
                id.name.as_str(),
                id.controller_name.as_str(),
            );
            tokio::spawn(tap::serve(
                listener,
                self.config.side.max_connections,
                tls.server.clone(),
                server,
                stats,
                watch.clone(),
            ));
        }
        let mut admin = Admin::new(self.metrics.clone(), self.log_level, admin_shutdown.clone());
        if let (Some((credentials, _)), Some(id)) = (&self.identity, &self.config.identity) {
            // Not ready until the first certificate: a proxy that cannot do mTLS yet must not
            // be sent meshed traffic.
            let ready = Arc::new(AtomicBool::new(false));
            admin = admin.with_readiness(ready.clone());
            tokio::spawn(track_certificate(
                credentials.expiry(),
                ready,
                self.metrics.cert_expiry.clone(),
            ));
            match conduit_discovery::channel(&id.svc_addr, controller_tls) {
                Ok(channel) => {
                    let client = IdentityClient::new(channel);
                    let certify = conduit_identity::certify::Config {
                        token_path: id.token_path.clone(),
                        backoff: conduit_stack::Backoff::default(),
                    };
                    tokio::spawn(conduit_identity::certify::run(
                        credentials.clone(),
                        client,
                        certify,
                    ));
                }
                // Validated at start-up; a failure here is a bug, not a configuration.
                Err(error) => tracing::error!(%error, "cannot reach the identity service"),
            }
        }
        tokio::spawn(outbound.serve(self.outbound, watch.clone()));
        tokio::spawn(inbound.serve(self.inbound, watch.clone()));
        tokio::spawn(admin.serve(self.admin, watch.clone()));
        tokio::spawn(keep_timer_armed(watch.clone()));
        drop(watch);
        tracing::info!("proxy ready");

        tokio::select! {
            _ = shutdown => {}
            _ = admin_shutdown.notified() => {}
        }
        let grace = self.config.shutdown_grace_period;
        tracing::info!(
            ?grace,
            "shutting down: no new connections, letting in-flight work finish"
        );
        match tokio::time::timeout(grace, signal.drain()).await {
            Ok(()) => {
                tracing::info!("drained");
                true
            }
            Err(_) => {
                tracing::warn!("grace period over with connections still open");
                false
            }
        }
    }
}

impl Bound {
    /// Inbound policies: from the controller for the configured pod, else the default; none
    /// at all when that default lets everyone in (nothing to check per request).
    fn port_policies(
        &self,
        discovery: Option<conduit_discovery::Discovery>,
    ) -> Option<PortPolicies> {
        let policy = &self.config.policy;
        let source = discovery.zip(policy.workload.clone());
        if source.is_none() && policy.default == DefaultPolicy::AllUnauthenticated {
            return None;
        }
        let policies = PortPolicies::new(
            source,
            policy.default.policy(&policy.cluster_networks),
            self.metrics.authz.clone(),
        );
        // The workload's known ports are followed from the start, so their first connections
        // need not wait for the controller.
        for port in &policy.inbound_ports {
            policies.port(*port);
        }
        Some(policies)
    }
}

/// Marks the proxy ready at its first certificate, and keeps the expiry metric current.
async fn track_certificate(
    mut expiry: tokio::sync::watch::Receiver<Option<std::time::SystemTime>>,
    ready: Arc<AtomicBool>,
    metric: Arc<AtomicU64>,
) {
    loop {
        if let Some(at) = *expiry.borrow_and_update() {
            let secs = at
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            metric.store(secs, Ordering::Relaxed);
            ready.store(true, Ordering::Release);
        }
        if expiry.changed().await.is_err() {
            return;
        }
    }
}

/// Keeps one short timer always pending in the runtime.
///
/// Requests may arm timers (a response or route timeout, a connection's idle timer being
/// reset). When a new timer is the earliest, tokio's time driver wakes its own thread through
/// an eventfd so the next `epoll_wait` uses the new deadline: one extra `write` syscall and
/// one extra wake-up. With a timer that is always due sooner, new request timers are never the
/// earliest, and that cost goes away, for one wake-up every half second.
async fn keep_timer_armed(mut drain: drain::Watch) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = drain.signaled() => return,
        }
    }
}

/// Builds the runtime for `cores` worker threads: a single-threaded runtime for one core,
/// which avoids cross-thread wake-ups entirely.
pub fn runtime(cores: usize) -> io::Result<tokio::runtime::Runtime> {
    if cores <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .enable_all()
            .build()
    }
}
