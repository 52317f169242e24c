use crate::authorize::{Authz, PortPolicies};
use crate::opaque::{read_header, TransportTarget};
use crate::{Config, HttpRouter, Route};
use bytes::Bytes;
use conduit_api::tap::tap_event::Direction as TapDirection;
use conduit_http::client::{Endpoint, NewClient};
use conduit_identity::Name;
use conduit_io::{CountingIo, PrefixedIo};
use conduit_metrics::{Direction, HttpTarget, Peer, PendingTcp, ProxyMetrics, TcpLabels, TlsLabel};
use conduit_policy::Protocol;
use conduit_stack::{drain, NewCache};
use conduit_tap::{Labels, Peers, TapLayer, Taps};
use conduit_tls::{ClientHello, ClientTls, ServerTls};
use conduit_transport::Accepted;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tower_layer::Layer;

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

/// A proxy's mutual TLS, both ways, over its credentials.
#[derive(Clone, Debug)]
pub struct Tls {
    /// To meshed endpoints.
    pub client: ClientTls,
    /// From meshed clients, for our own identity.
    pub server: ServerTls,
}

/// Serves accepted connections for one side of the proxy.
#[derive(Clone, Debug)]
pub struct Connection {
    direction: Direction,
    config: Config,
    metrics: ProxyMetrics,
    clients: NewCache<Endpoint, NewClient>,
    tls: Option<Tls>,
    policies: Option<PortPolicies>,
    taps: Taps,
    /// This workload's labels, for tap events and filters.
    labels: Option<Arc<Labels>>,
    /// This proxy's identity, shared by every connection's tap events.
    identity: Option<Arc<str>>,
}

/// What is known of an accepted connection once TLS is handled.
struct Conn {
    client: SocketAddr,
    tls: TlsLabel,
    /// mTLS from another proxy.
    meshed: bool,
    authz: Option<Authz>,
}

/// What a connection turned out to be, once any TLS is handled.
enum Accept<I> {
    /// Plaintext, or TLS for another name: its bytes are served as they come.
    Plain(PrefixedIo<I>, TlsLabel),
    /// mTLS for us, terminated, from a client with this identity (if it sent a certificate).
    /// Boxed: rustls's connection state is large.
    Terminated(Box<conduit_tls::ServerStream<PrefixedIo<I>>>, Terminated),
}

/// What a terminated connection's handshake said.
struct Terminated {
    tls: TlsLabel,
    identity: Option<Name>,
    /// The client agreed on opaque TCP behind a transport header.
    transport: bool,
}

impl Connection {
    /// Serves connections for `direction`, recording into `metrics`; with `tls`, endpoints
    /// with an identity are reached over mTLS and (inbound) mTLS for our identity is
    /// terminated.
    pub fn new(
        direction: Direction,
        config: Config,
        metrics: ProxyMetrics,
        tls: Option<Tls>,
    ) -> Self {
        let mut new_client = NewClient::new(config.client.clone());
        if let Some(tls) = &tls {
            new_client = new_client.with_tls(tls.client.clone());
        }
        let clients = NewCache::new(new_client, config.cache_idle);
        Self {
            direction,
            config,
            metrics,
            clients,
            policies: None,
            taps: Taps::new(),
            labels: None,
            identity: tls.as_ref().map(|t| t.server.name().clone().into()),
            tls,
        }
    }

    /// Lets `taps` see every HTTP request; `labels` are this workload's.
    pub fn with_taps(mut self, taps: Taps, labels: Option<Arc<Labels>>) -> Self {
        self.taps = taps;
        self.labels = labels;
        self
    }

    /// Authorizes every connection and request by its port's policy (the inbound side).
    pub fn with_policies(mut self, policies: PortPolicies) -> Self {
        self.policies = Some(policies);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The per-endpoint clients, shared with whatever else sends to endpoints.
    pub fn clients(&self) -> &NewCache<Endpoint, NewClient> {
        &self.clients
    }

    /// Whether this side has an identity (and so speaks mTLS to meshed peers).
    pub fn has_identity(&self) -> bool {
        self.tls.is_some()
    }

    pub(crate) fn direction(&self) -> Direction {
        self.direction
    }

    pub(crate) fn metrics(&self) -> &ProxyMetrics {
        &self.metrics
    }

    pub(crate) fn client_tls(&self) -> Option<&ClientTls> {
        self.tls.as_ref().map(|t| &t.client)
    }

    /// Serves one accepted connection until it closes.
    ///
    /// Inbound, `transport` says where opaque TCP from another proxy goes, by the port its
    /// transport header names; with no `dst`, that is the only traffic served (a connection
    /// made straight to the inbound listener, with no forward address).
    pub async fn serve(
        &self,
        accepted: Accepted,
        dst: Option<Destination>,
        transport: Option<&TransportTarget>,
        drain: drain::Watch,
    ) {
        let (client, local) = (accepted.client, accepted.local);
        let pending = Arc::new(PendingTcp::default());
        let io = CountingIo::new(accepted.stream, pending.clone());
        let opaque = dst
            .as_ref()
            .is_some_and(|d| self.config.opaque_ports.contains(&d.target_addr.port()));
        let accepted = match self.accept_tls(io, opaque).await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%error, %client, "connection failed before it was served");
                return;
            }
        };
        match (accepted, dst, transport) {
            (Accept::Terminated(io, t), _, Some(target)) if t.transport => {
                // Boxed: a rare path, whose header read would otherwise enlarge every
                // connection's task.
                let served = self.serve_transport(io, t, (client, local), target, &pending, drain);
                Box::pin(served).await
            }
            (Accept::Terminated(io, t), Some(dst), _) if !t.transport => {
                let conn = (client, t.tls, t.identity, true);
                self.serve_accepted(io, conn, false, dst, &pending, drain)
                    .await
            }
            (Accept::Plain(io, tls), Some(dst), _) => {
                let conn = (client, tls, None, false);
                self.serve_accepted(io, conn, opaque, dst, &pending, drain)
                    .await
            }
            _ => tracing::info!(
                %client,
                "refusing connection: only mTLS opaque TCP from other proxies is taken here"
            ),
        }
    }

    /// Serves opaque TCP from another proxy: reads its transport header and carries the rest
    /// to the port it names, under that port's policy.
    async fn serve_transport<I>(
        &self,
        mut io: Box<conduit_tls::ServerStream<PrefixedIo<I>>>,
        t: Terminated,
        (client, local): (SocketAddr, SocketAddr),
        target: &TransportTarget,
        pending: &PendingTcp,
        drain: drain::Watch,
    ) where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let header = match read_header(&mut io, self.config.detect.timeout).await {
            Ok(header) => header,
            Err(error) => {
                tracing::info!(%error, %client, "closing: bad transport header");
                return;
            }
        };
        let (addr, target_addr) = match target.resolve(local, header.port) {
            Ok(found) => found,
            Err(error) => {
                tracing::info!(%error, %client, "closing: refused transport header");
                return;
            }
        };
        let dst = Destination {
            target_addr,
            tcp: Some(addr),
            route: Route::Fixed(addr),
        };
        let conn = (client, t.tls, t.identity, true);
        self.serve_accepted(io, conn, true, dst, pending, drain)
            .await
    }

    /// Serves a connection once its TLS is settled: counts it under its TLS labels, waits
    /// for its port's policy, detects its protocol (unless `opaque` by configuration or by
    /// policy) and serves it. `meshed` when it is mTLS from another proxy.
    async fn serve_accepted<I>(
        &self,
        io: I,
        (client, tls, identity, meshed): (SocketAddr, TlsLabel, Option<Name>, bool),
        opaque: bool,
        dst: Destination,
        pending: &PendingTcp,
        drain: drain::Watch,
    ) where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let labels = TcpLabels {
            direction: self.direction,
            peer: Peer::Src,
            target_addr: dst.target_addr,
            tls: tls.clone(),
        };
        pending.attach(self.metrics.tcp.open(&labels));
        let authz = self
            .policies
            .as_ref()
            .map(|p| Authz::new(p, client, identity, dst.target_addr));
        if let Some(a) = &authz {
            a.ready(self.config.detect.timeout).await;
        }
        // The port's policy may name its protocol: then there is nothing to detect. Opaque
        // ports skip detection so that server-speaks-first protocols do not wait; an HTTP
        // hint holds for plaintext clients, while a meshed client speaks what its proxy
        // chose (HTTP/2 for HTTP/1 requests), which detection reads at once.
        let hint = authz.as_ref().map(|a| a.policy().protocol);
        let known = match hint {
            _ if opaque => Some(None),
            Some(Protocol::Opaque) => Some(None),
            Some(Protocol::Http1) if !meshed => Some(Some(conduit_http::Http::Http1)),
            Some(Protocol::Http2 | Protocol::Grpc) if !meshed => Some(Some(conduit_http::Http::H2)),
            _ => None,
        };
        let detected = match known {
            Some(http) => Ok((http, PrefixedIo::new(Bytes::new(), io))),
            None => conduit_detect::detect_io(io, self.config.detect).await,
        };
        let conn = Conn {
            client,
            tls,
            meshed,
            authz,
        };
        self.serve_detected(detected, conn, dst, drain).await
    }

    /// The TLS label of a plaintext connection: `no_identity` when this side could do mTLS,
    /// `disabled` when it has no identity.
    pub(crate) fn plain(&self) -> TlsLabel {
        match self.tls {
            Some(_) => TlsLabel::NoIdentity,
            None => TlsLabel::Disabled,
        }
    }

    /// Inbound with an identity: reads the first bytes for a ClientHello. TLS for our own
    /// name is terminated; TLS for another name, and anything else, is served as it is.
    async fn accept_tls<I>(&self, io: I, opaque: bool) -> std::io::Result<Accept<I>>
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        let server = match &self.tls {
            Some(tls) if self.direction == Direction::Inbound && !opaque => &tls.server,
            _ => {
                return Ok(Accept::Plain(
                    PrefixedIo::new(Bytes::new(), io),
                    self.plain(),
                ))
            }
        };
        let (hello, io) =
            conduit_detect::read_until(io, self.config.detect, conduit_tls::client_hello).await?;
        match hello {
            Some(ClientHello::Tls { server_name })
                if server_name.as_deref() == Some(server.name().as_str()) =>
            {
                // Bounded like detection: a client that stalls mid-handshake is cut off.
                // Boxed: the handshake's state would otherwise enlarge every connection's
                // task, plaintext ones included.
                let handshake = conduit_tls::within(self.config.detect.timeout, server.accept(io));
                let tls = Box::pin(handshake).await?;
                let identity = conduit_tls::peer_identity(tls.get_ref().1);
                let client_id = identity.clone().map(Arc::from);
                let transport = conduit_tls::is_transport(tls.get_ref().1);
                let terminated = Terminated {
                    tls: TlsLabel::Client(client_id),
                    identity,
                    transport,
                };
                Ok(Accept::Terminated(Box::new(tls), terminated))
            }
            _ => Ok(Accept::Plain(io, self.plain())),
        }
    }

    async fn serve_detected<I>(
        &self,
        detected: std::io::Result<(Option<conduit_http::Http>, PrefixedIo<I>)>,
        conn: Conn,
        dst: Destination,
        drain: drain::Watch,
    ) where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let Conn {
            client,
            tls,
            meshed,
            authz,
        } = conn;
        let (http, io) = match detected {
            Ok(found) => found,
            Err(error) => {
                tracing::debug!(%error, %client, "connection failed during detection");
                return;
            }
        };
        tracing::debug!(?http, %client, target = %dst.target_addr, ?tls, "serving");
        match http {
            Some(http) => {
                let tap = TapLayer::new(self.taps.clone(), self.peers(client, &tls, meshed, &dst));
                let router = HttpRouter::new(
                    dst.route,
                    self.clients.clone(),
                    http,
                    dst.target_addr,
                    meshed,
                    &self.config,
                )
                .with_authz(authz);
                let target = HttpTarget {
                    direction: self.direction,
                    target_addr: dst.target_addr,
                    tls,
                };
                let svc = self.metrics.http.layer(target).layer(tap.layer(router));
                if let Err(error) =
                    conduit_http::server::serve(io, http, svc, &self.config.server, drain).await
                {
                    tracing::debug!(%error, %client, "HTTP connection closed with an error");
                }
            }
            None => match dst.tcp {
                Some(addr) => {
                    if let Some(Err(denied)) = authz.as_ref().map(Authz::check_connection) {
                        tracing::info!(%client, %denied, "closing: refused by policy");
                        return;
                    }
                    // Boxed, like the HTTP server: each connection's task holds only
                    // the protocol it turned out to be.
                    Box::pin(self.forward_tcp(io, &dst, addr)).await
                }
                None => tracing::info!(
                    %client,
                    "refusing opaque connection: no original destination"
                ),
            },
        }
    }

    /// What a tap knows of a connection's two ends.
    fn peers(&self, client: SocketAddr, tls: &TlsLabel, meshed: bool, dst: &Destination) -> Peers {
        let ours = self.identity.clone();
        match self.direction {
            Direction::Inbound => Peers {
                direction: TapDirection::Inbound,
                source: client,
                source_identity: match tls {
                    TlsLabel::Client(id) => id.clone(),
                    _ => None,
                },
                source_labels: None,
                destination: dst.target_addr,
                destination_identity: ours.filter(|_| meshed),
                destination_labels: self.labels.clone(),
                tls: meshed,
            },
            Direction::Outbound => Peers {
                direction: TapDirection::Outbound,
                source: client,
                source_identity: ours,
                source_labels: self.labels.clone(),
                destination: dst.target_addr,
                destination_identity: None,
                destination_labels: None,
                tls: false,
            },
        }
    }
}
