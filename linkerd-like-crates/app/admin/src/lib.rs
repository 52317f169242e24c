//! The admin server: the proxy's (default `127.0.0.1:4191`) and the controller's (`:9990`).
//!
//! | path | method | what |
//! |---|---|---|
//! | `/metrics` | GET | every metric, Prometheus text format 0.0.4 |
//! | `/ready` | GET | 200 once the proxy serves traffic |
//! | `/live` | GET | 200 while the process runs |
//! | `/shutdown` | POST | begins a graceful shutdown; only from a loopback address |
//! | `/proxy-log-level` | GET, PUT | reads or replaces the log filter (`info`, `warn,conduit=debug`...) |
//!
//! Anything else is 404; a known path with the wrong method is 405 with an `allow` header.

#![forbid(unsafe_code)]

mod process;
pub mod trace;

pub use self::process::mark_start;

use bytes::Bytes;
use conduit_metrics::ProxyMetrics;
use conduit_stack::drain;
use conduit_transport::Listener;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// Admin connections served at once; more wait to be accepted. Probes and scrapers need a
/// handful; the bound keeps a flood of them from costing the proxy its memory.
const MAX_CONNECTIONS: usize = 64;

/// What `/metrics` serves: a process's metrics in the Prometheus text format.
pub trait Metrics: Send + Sync + 'static {
    /// Every metric, as text.
    fn encode(&self) -> String;
}

impl Metrics for ProxyMetrics {
    fn encode(&self) -> String {
        ProxyMetrics::encode(self)
    }
}

/// Reads and replaces the process's log filter.
pub trait LogLevel: Send + Sync + 'static {
    /// The current filter.
    fn get(&self) -> String;
    /// Replaces the filter, or says why it is invalid.
    fn set(&self, filter: &str) -> Result<(), String>;
}

/// What the admin server serves.
#[derive(Clone)]
pub struct Admin {
    metrics: Arc<dyn Metrics>,
    /// Whether `/ready` says ready; `None` is always.
    ready: Option<Arc<std::sync::atomic::AtomicBool>>,
    log_level: Arc<dyn LogLevel>,
    shutdown: Arc<tokio::sync::Notify>,
    pages: Vec<(&'static str, Arc<dyn Page>)>,
}

/// An extra read-only page of the admin server (the controller's `/meshed-endpoints`, say).
pub trait Page: Send + Sync + 'static {
    /// The page's text now.
    fn render(&self) -> String;
}

impl<F: Fn() -> String + Send + Sync + 'static> Page for F {
    fn render(&self) -> String {
        self()
    }
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

/// The largest log filter accepted by `PUT /proxy-log-level`.
const MAX_LOG_FILTER: usize = 4096;

impl Admin {
    /// Serves `metrics`; `shutdown` is notified when `/shutdown` is called.
    pub fn new(
        metrics: impl Metrics,
        log_level: Arc<dyn LogLevel>,
        shutdown: Arc<tokio::sync::Notify>,
    ) -> Self {
        Self {
            metrics: Arc::new(metrics),
            ready: None,
            log_level,
            shutdown,
            pages: Vec::new(),
        }
    }

    /// Serves `page` as plain text at `path` (GET only).
    pub fn with_page(mut self, path: &'static str, page: impl Page) -> Self {
        self.pages.push((path, Arc::new(page)));
        self
    }

    /// `/ready` answers 503 until `ready` is set (a controller's first sync, say).
    pub fn with_readiness(mut self, ready: Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.ready = Some(ready);
        self
    }

    /// Serves `listener` until `drain` is signaled.
    pub async fn serve(self, listener: Listener, drain: drain::Watch) {
        conduit_transport::serve(listener, MAX_CONNECTIONS, drain, move |accepted, _| {
            let admin = self.clone();
            let client = accepted.client;
            async move {
                let svc = hyper::service::service_fn(move |req| {
                    let admin = admin.clone();
                    async move { Ok::<_, std::convert::Infallible>(admin.handle(req, client).await) }
                });
                let io = TokioIo::new(accepted.stream);
                if let Err(error) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await
                {
                    tracing::debug!(%error, "admin connection failed");
                }
            }
        })
        .await
    }

    /// Answers one admin request from `client`.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        match req.uri().path() {
            "/metrics" => only(&method, &[Method::GET], || {
                let mut text = self.metrics.encode();
                process::encode(&mut text);
                let mut rsp = text_response(StatusCode::OK, text);
                rsp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                rsp
            }),
            "/ready" => only(&method, &[Method::GET], || {
                let ready = self
                    .ready
                    .as_ref()
                    .is_none_or(|r| r.load(std::sync::atomic::Ordering::Acquire));
                if ready {
                    text_response(StatusCode::OK, "ready\n")
                } else {
                    text_response(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }),
            "/live" => only(&method, &[Method::GET], || {
                text_response(StatusCode::OK, "live\n")
            }),
            "/shutdown" => only(&method, &[Method::POST], || {
                if !client.ip().is_loopback() {
                    return text_response(
                        StatusCode::FORBIDDEN,
                        "shutdown is only allowed from localhost\n",
                    );
                }
                tracing::info!("shutdown requested through the admin server");
                self.shutdown.notify_one();
                text_response(StatusCode::OK, "shutdown\n")
            }),
            "/proxy-log-level" => match method {
                Method::GET => text_response(StatusCode::OK, format!("{}\n", self.log_level.get())),
                Method::PUT => self.put_log_level(req).await,
                _ => not_allowed(&[Method::GET, Method::PUT]),
            },
            path => match self.pages.iter().find(|(p, _)| *p == path) {
                Some((_, page)) => only(&method, &[Method::GET], || {
                    text_response(StatusCode::OK, page.render())
                }),
                None => text_response(StatusCode::NOT_FOUND, "not found\n"),
            },
        }
    }

    async fn put_log_level(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let body = match Limited::new(req.into_body(), MAX_LOG_FILTER)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => return text_response(StatusCode::PAYLOAD_TOO_LARGE, "log filter too long\n"),
        };
        let Ok(filter) = std::str::from_utf8(&body) else {
            return text_response(StatusCode::BAD_REQUEST, "log filter must be UTF-8\n");
        };
        match self.log_level.set(filter.trim()) {
            Ok(()) => {
                tracing::info!(filter = filter.trim(), "log level changed");
                Response::builder()
                    .status(StatusCode::NO_CONTENT)
                    .body(Full::default())
                    .unwrap_or_default()
            }
            Err(e) => text_response(
                StatusCode::BAD_REQUEST,
                format!("invalid log filter: {e}\n"),
            ),
        }
    }
}

fn only(
    method: &Method,
    allowed: &[Method],
    f: impl FnOnce() -> Response<Full<Bytes>>,
) -> Response<Full<Bytes>> {
    if allowed.contains(method) {
        f()
    } else {
        not_allowed(allowed)
    }
}

fn not_allowed(allowed: &[Method]) -> Response<Full<Bytes>> {
    let mut rsp = text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    let list: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    if let Ok(v) = header::HeaderValue::from_str(&list.join(", ")) {
        rsp.headers_mut().insert(header::ALLOW, v);
    }
    rsp
}

fn text_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(body.into()));
    *rsp.status_mut() = status;
    rsp
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; shut down through the admin server");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
