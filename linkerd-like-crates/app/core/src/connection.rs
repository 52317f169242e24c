use crate::{Config, HttpRouter, Route};
use bytes::Bytes;
use conduit_http::client::{Endpoint, NewClient};
use conduit_io::{CountingIo, PrefixedIo};
use conduit_metrics::{Direction, HttpTarget, Peer, ProxyMetrics, TcpLabels};
use conduit_stack::{drain, NewCache};
use conduit_transport::{Accepted, ConnectionLimit, Listener};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tower_layer::Layer;

/// The TLS label value until mutual TLS exists.
const TLS_DISABLED: &str = "disabled";

/// Where an accepted connection goes.
#[derive(Clone, Debug)]
pub struct Destination {
    /// The address the client meant to reach; it labels the connection's metrics.
    pub target_addr: SocketAddr,
    /// Where opaque TCP is carried; `None` refuses opaque traffic (explicit mode).
    pub tcp: Option<SocketAddr>,
    /// Where HTTP requests go.
    pub route: Route,
}

/// Serves accepted connections for one side of the proxy.
#[derive(Clone, Debug)]
pub struct Connection {
    direction: Direction,
    config: Config,
    metrics: ProxyMetrics,
    clients: NewCache<Endpoint, NewClient>,
}

impl Connection {
    /// Serves connections for `direction`, recording into `metrics`.
    pub fn new(direction: Direction, config: Config, metrics: ProxyMetrics) -> Self {
        let clients = NewCache::new(NewClient::new(config.client.clone()), config.cache_idle);
        Self {
            direction,
            config,
            metrics,
            clients,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The per-endpoint clients, shared with whatever else sends to endpoints.
    pub fn clients(&self) -> &NewCache<Endpoint, NewClient> {
        &self.clients
    }

    /// Serves one accepted connection until it closes.
    pub async fn serve(&self, accepted: Accepted, dst: Destination, drain: drain::Watch) {
        let labels = TcpLabels {
            direction: self.direction,
            peer: Peer::Src,
            target_addr: dst.target_addr,
            tls: TLS_DISABLED,
        };
        let io = CountingIo::new(accepted.stream, self.metrics.tcp.open(&labels));
        let detected = if self.config.opaque_ports.contains(&dst.target_addr.port()) {
            Ok((None, PrefixedIo::new(Bytes::new(), io)))
        } else {
            conduit_detect::detect_io(io, self.config.detect).await
        };
        let (http, io) = match detected {
            Ok(found) => found,
            Err(error) => {
                tracing::debug!(%error, client = %accepted.client, "connection failed during detection");
                return;
            }
        };
        tracing::debug!(?http, client = %accepted.client, target = %dst.target_addr, "serving");
        match http {
            Some(http) => {
                let router = HttpRouter::new(
                    dst.route,
                    self.clients.clone(),
                    http,
                    dst.target_addr,
                    &self.config,
                );
                let target = HttpTarget {
                    direction: self.direction,
                    target_addr: dst.target_addr,
                    tls: TLS_DISABLED,
                };
                let svc = self.metrics.http.layer(target).layer(router);
                if let Err(error) =
                    conduit_http::server::serve(io, http, svc, &self.config.server, drain).await
                {
                    tracing::debug!(%error, client = %accepted.client, "HTTP connection closed with an error");
                }
            }
            None => match dst.tcp {
                Some(addr) => self.forward_tcp(io, addr).await,
                None => tracing::info!(
                    client = %accepted.client,
                    "refusing opaque connection: no original destination"
                ),
            },
        }
    }

    async fn forward_tcp<I>(&self, io: I, addr: SocketAddr)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let upstream =
            match conduit_transport::connect(addr, self.config.client.connect_timeout).await {
                Ok(s) => s,
                Err(error) => {
                    tracing::info!(%error, "opaque connection refused upstream");
                    return;
                }
            };
        let labels = TcpLabels {
            direction: self.direction,
            peer: Peer::Dst,
            target_addr: addr,
            tls: TLS_DISABLED,
        };
        let upstream = CountingIo::new(upstream, self.metrics.tcp.open(&labels));
        conduit_http::forward::splice(io, upstream).await;
    }
}

/// Accepts connections from `listener` and hands each to `serve` on its own task, at most
/// `max_connections` at a time, until `drain` is signaled.
pub async fn serve<F, Fut>(
    listener: Listener,
    max_connections: usize,
    mut drain: drain::Watch,
    serve: F,
) where
    F: Fn(Accepted, drain::Watch) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limit = ConnectionLimit::new(max_connections);
    loop {
        let permit = tokio::select! {
            p = limit.acquire() => p,
            _ = drain.signaled() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = drain.signaled() => break,
        };
        match accepted {
            Ok(accepted) => {
                let conn = serve(accepted, drain.clone());
                tokio::spawn(async move {
                    conn.await;
                    drop(permit);
                });
            }
            Err(error) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tracing::debug!(addr = %listener.local_addr(), "stopped accepting");
}
