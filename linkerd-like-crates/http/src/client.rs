//! Clients to endpoints, on hyper's connection API.
//!
//! One [`Client`] per endpoint (built by [`NewClient`], cached by the caller) owns:
//!
//! - for HTTP/1.1, a pool of idle connections, bounded in number and idle time: a task closes
//!   each connection left idle longer, so a burst's connections do not outlive it. A downstream
//!   connection borrows one upstream connection into its [`Slot`] and keeps it while it sends
//!   requests one at a time, so the common keep-alive case touches the shared pool once per
//!   connection, not once per request; the connection goes back to the pool when the slot is
//!   dropped. A request that finds its reused connection closed by the peer before anything
//!   was sent is retried once on a fresh connection, as a browser or hyper-util would.
//! - for HTTP/2, one multiplexed connection shared by every request, re-established when it
//!   closes. A request without a body that the upstream refuses unprocessed (a stream past
//!   the last one of its GOAWAY, or reset with REFUSED_STREAM) is sent again, up to
//!   [`MAX_SENDS_REFUSED`] times in all; one with a body fails with [`Refused`], which says
//!   it is safe to retry.
//!
//! An endpoint with an identity is another proxy: its connections are mutual TLS with that
//! identity as the server name ([`NewClient::with_tls`]). Requests to it travel as HTTP/2
//! (ALPN `h2`) whatever the client spoke, except HTTP/1 requests HTTP/2 cannot carry
//! (upgrades, `CONNECT`), which use HTTP/1.1 over TLS (ALPN `http/1.1`).
//!
//! Requests go out as they are: the caller gives HTTP/1.1 requests in origin form (or
//! authority form for `CONNECT`) with a `Host` header, and HTTP/2 requests (including HTTP/1
//! requests for a meshed endpoint, marked by their version) with a scheme and authority.

pub use crate::h2_client::Refused;
use crate::h2_client::{self, H2Connection};
use crate::{Http, ProxyBody};
use conduit_error::Error;
use conduit_io::{Batched, Coalesced, Io};
use conduit_stack::NewService;
use conduit_tls::{ClientTls, Name};
use futures::future::Either;
use http_body::Body;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// How many times a bodyless HTTP/2 request is sent while the upstream refuses it
/// unprocessed. Each refusal comes with a connection ending (or an upstream shedding load),
/// so a second send nearly always lands; the bound is for an upstream that refuses all.
const MAX_SENDS_REFUSED: usize = 3;

/// How clients connect and pool.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
    /// How long an idle HTTP/1.1 connection stays in the pool before it is closed.
    pub idle_timeout: Duration,
    /// How many idle HTTP/1.1 connections one endpoint keeps.
    pub max_idle_per_endpoint: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(20),
            max_idle_per_endpoint: 64,
        }
    }
}

/// One endpoint, and the HTTP version to speak to it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Where to connect.
    pub addr: SocketAddr,
    /// What the client spoke (and, without TLS, what the endpoint is spoken to in).
    pub http: Http,
    /// The identity of the endpoint's proxy: connect with mutual TLS, expecting it.
    pub tls: Option<Name>,
}

impl Endpoint {
    /// A plaintext endpoint.
    pub fn plain(addr: SocketAddr, http: Http) -> Self {
        Self {
            addr,
            http,
            tls: None,
        }
    }
}

/// Marks a response whose request had to open a connection first, with the time that took
/// (connect, any TLS and HTTP/2 handshake): a latency-aware balancer should not hold it
/// against the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewConnection(pub Duration);

/// Mutual TLS to `identity` at `addr` failed.
#[derive(Debug, thiserror::Error)]
#[error("mTLS to {identity} at {addr} failed: {source}")]
pub struct TlsConnectError {
    /// The identity expected.
    pub identity: Name,
    /// Where.
    pub addr: SocketAddr,
    /// Why: a handshake error says what rustls refused (wrong name, expired, unknown issuer).
    #[source]
    pub source: std::io::Error,
}

/// Builds a [`Client`] per [`Endpoint`].
#[derive(Clone, Debug, Default)]
pub struct NewClient {
    config: ClientConfig,
    tls: Option<ClientTls>,
}

impl NewClient {
    /// Clients configured by `config`.
    pub fn new(config: ClientConfig) -> Self {
        Self { config, tls: None }
    }

    /// Endpoints with an identity are reached with mutual TLS through `tls`.
    pub fn with_tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }
}

impl NewService<Endpoint> for NewClient {
    type Service = Client;

    fn new_service(&self, endpoint: Endpoint) -> Client {
        Client {
            pool: Arc::new(Pool {
                endpoint,
                config: self.config.clone(),
                tls: self.tls.clone(),
                idle: Mutex::new(Idle::default()),
                h2: Mutex::new(None),
                h2_connecting: tokio::sync::Mutex::new(()),
            }),
        }
    }
}

/// A client to one endpoint. Cheap to clone; clones share connections.
#[derive(Clone, Debug)]
pub struct Client {
    pool: Arc<Pool>,
}

#[derive(Debug)]
struct Pool {
    endpoint: Endpoint,
    config: ClientConfig,
    tls: Option<ClientTls>,
    idle: Mutex<Idle>,
    h2: Mutex<Option<H2Connection>>,
    /// Held while an HTTP/2 connection is being made, so concurrent requests share it.
    h2_connecting: tokio::sync::Mutex<()>,
}

/// A pool's idle HTTP/1.1 connections, each with the time it became idle.
#[derive(Debug, Default)]
struct Idle {
    conns: Vec<(http1::SendRequest<ProxyBody>, Instant)>,
    /// Whether a task is closing the expired ones (see [`reap`]).
    reaping: bool,
}

impl Idle {
    /// Drops closed and expired connections; `None` when none is left, otherwise when the
    /// oldest expires.
    fn prune(&mut self, now: Instant, timeout: Duration) -> Option<Instant> {
        self.conns
            .retain(|(s, since)| !s.is_closed() && now.saturating_duration_since(*since) < timeout);
        self.conns.iter().map(|(_, since)| *since + timeout).min()
    }
}

/// Closes `pool`'s idle connections as they expire, and ends when none is left or the pool
/// is gone. It holds the pool only while it prunes, so it never keeps a pool alive.
async fn reap(pool: std::sync::Weak<Pool>) {
    loop {
        let next = {
            let Some(pool) = pool.upgrade() else { return };
            let mut idle = pool.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let next = idle.prune(Instant::now(), pool.config.idle_timeout);
            if next.is_none() {
                idle.reaping = false;
            }
            next
        };
        match next {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => return,
        }
    }
}

/// A downstream connection's upstream HTTP/1.1 connection, returned to its pool on drop.
///
/// Only a downstream HTTP/1 connection holds one: its requests come one at a time, so the
/// next can wait for the held connection. A multiplexed (HTTP/2) downstream connection's
/// requests are concurrent: each takes a ready connection from the pool (or a new one), and
/// gives it back as soon as it is sent, so that concurrent streams run on as many
/// connections rather than queue behind one.
#[derive(Debug, Default)]
pub struct Slot {
    held: Mutex<Option<(http1::SendRequest<ProxyBody>, Arc<Pool>)>>,
    multiplexed: bool,
}

impl Slot {
    /// An empty slot, for a downstream HTTP/1 connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// A slot that holds nothing, for a downstream HTTP/2 connection.
    pub fn multiplexed() -> Self {
        Self {
            held: Mutex::new(None),
            multiplexed: true,
        }
    }

    /// The held connection, if it belongs to `pool`; one to another endpoint goes back to
    /// its own pool.
    fn take(&self, pool: &Arc<Pool>) -> Option<http1::SendRequest<ProxyBody>> {
        if self.multiplexed {
            return None;
        }
        let held = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match held {
            Some((sender, owner)) if Arc::ptr_eq(&owner, pool) => Some(sender),
            Some((sender, owner)) => {
                owner.put(sender);
                None
            }
            None => None,
        }
    }

    fn keep(&self, sender: http1::SendRequest<ProxyBody>, pool: &Arc<Pool>) {
        if self.multiplexed {
            // Busy until its response is done; the pool hands out only ready ones.
            pool.put(sender);
            return;
        }
        let previous = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace((sender, pool.clone()));
        if let Some((sender, owner)) = previous {
            owner.put(sender);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let held = self
            .held
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((sender, pool)) = held {
            pool.put(sender);
        }
    }
}

impl Pool {
    /// Returns a connection for reuse, unless it is closed or the pool is full.
    fn put(self: &Arc<Self>, sender: http1::SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        // Closed and expired connections are dropped here, when they would take the room of
        // a live one, and by the reaper, rather than on every checkout.
        if idle.conns.len() >= self.config.max_idle_per_endpoint {
            idle.prune(Instant::now(), self.config.idle_timeout);
        }
        if idle.conns.len() >= self.config.max_idle_per_endpoint {
            return;
        }
        idle.conns.push((sender, Instant::now()));
        // Outside a runtime (a slot dropped as the proxy exits) nothing outlives the pool.
        if !idle.reaping {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(reap(Arc::downgrade(self)));
                idle.reaping = true;
            }
        }
    }

    /// The most recently returned connection that is ready and not expired.
    ///
    /// Under a multiplexed downstream connection most of the pool is busy (a connection is
    /// returned as soon as its request is sent), and this runs once per request: one pass,
    /// one clock read, nothing removed but the connection taken.
    fn checkout(&self) -> Option<http1::SendRequest<ProxyBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh_since = Instant::now().checked_sub(self.config.idle_timeout);
        let pos = idle
            .conns
            .iter()
            .rposition(|(s, since)| s.is_ready() && fresh_since.is_none_or(|t| *since > t))?;
        Some(idle.conns.swap_remove(pos).0)
    }

    /// Connects, with mutual TLS when the endpoint has an identity.
    async fn connect(&self, h2: bool) -> Result<Box<dyn Io>, Error> {
        let tcp =
            conduit_transport::connect(self.endpoint.addr, self.config.connect_timeout).await?;
        let Some(identity) = &self.endpoint.tls else {
            return Ok(Box::new(tcp));
        };
        let tls = self.tls.as_ref().ok_or_else(|| TlsConnectError {
            identity: identity.clone(),
            addr: self.endpoint.addr,
            source: std::io::Error::other("this proxy has no identity"),
        })?;
        // The handshake is part of connecting, and bounded by the same timeout.
        let handshake = tls.connect(identity, h2, tcp);
        let io = conduit_tls::within(self.config.connect_timeout, handshake)
            .await
            .map_err(|source| TlsConnectError {
                identity: identity.clone(),
                addr: self.endpoint.addr,
                source,
            })?;
        Ok(Box::new(io))
    }

    async fn connect_h1(&self) -> Result<http1::SendRequest<ProxyBody>, Error> {
        let io = self.connect(false).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(Coalesced::new(io)))
            .await?;
        tokio::spawn(async move {
            if let Err(error) = conn.with_upgrades().await {
                tracing::debug!(%error, "upstream HTTP/1.1 connection failed");
            }
        });
        Ok(sender)
    }

    fn h2_open(&self) -> Option<H2Connection> {
        let shared = self
            .h2
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        shared.filter(|s| !s.is_closed())
    }

    /// Makes the shared HTTP/2 connection, unless a concurrent request just made it.
    async fn connect_h2(&self) -> Result<H2Connection, Error> {
        // One connection attempt at a time: concurrent requests wait and share it.
        let _connecting = self.h2_connecting.lock().await;
        if let Some(conn) = self.h2_open() {
            return Ok(conn);
        }
        let io = self.connect(true).await?;
        let conn = H2Connection::handshake(Batched::new(io)).await?;
        *self.h2.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn.clone());
        Ok(conn)
    }

    /// [`Self::connect_h2`], recording in `setup` how long it took.
    async fn connect_h2_timed(&self, setup: &mut Option<Duration>) -> Result<H2Connection, Error> {
        let start = Instant::now();
        let conn = self.connect_h2().await?;
        *setup = Some(start.elapsed());
        Ok(conn)
    }

    /// A `CONNECT` tunnel over HTTP/2 gets a connection of its own, on hyper's client, which
    /// turns the stream into an upgrade; a tunnel is long-lived, so one connection per tunnel
    /// costs what it does for HTTP/1.
    async fn tunnel_h2(
        &self,
        req: http::Request<ProxyBody>,
    ) -> Result<http::Response<ProxyBody>, Error> {
        let io = self.connect(true).await?;
        let (mut sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(Coalesced::new(io)))
            .await?;
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%error, "upstream HTTP/2 tunnel connection failed");
            }
        });
        sender.ready().await?;
        Ok(sender.send_request(req).await?.map(ProxyBody::Incoming))
    }
}

impl Client {
    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.pool.endpoint
    }

    /// Sends a request; HTTP/1.1 requests use (and refill) the caller's `slot`.
    ///
    /// The future owns what it needs, and each protocol's path is a future of its own: a
    /// request's future is moved and allocated on every request, so it should hold each
    /// thing once and no more than its own path needs.
    pub fn send(
        self,
        slot: Arc<Slot>,
        req: http::Request<ProxyBody>,
    ) -> impl Future<Output = Result<http::Response<ProxyBody>, Error>> + Send + 'static {
        // A meshed endpoint gets HTTP/1 requests as HTTP/2 (`forward` marks them so).
        let h2 = match self.pool.endpoint.http {
            Http::H2 => true,
            Http::Http1 => {
                self.pool.endpoint.tls.is_some() && req.version() == http::Version::HTTP_2
            }
        };
        match (h2, req.method() == http::Method::CONNECT) {
            // Boxed: a tunnel is rare, and its connection's handshake is a large future.
            (true, true) => Either::Left(Either::Left(Box::pin(async move {
                self.pool.tunnel_h2(req).await
            }))),
            (true, false) => Either::Left(Either::Right(self.send_h2(req))),
            (false, _) => Either::Right(self.send_h1(slot, req)),
        }
    }

    fn send_h2(
        self,
        req: http::Request<ProxyBody>,
    ) -> impl Future<Output = Result<http::Response<ProxyBody>, Error>> + Send + 'static {
        // A bodyless request is sent again if the upstream refuses it unprocessed, as nginx
        // does to the streams in flight when it ends a connection after its
        // `keepalive_requests` (1,000 by default). One with a body is not: the body is
        // streamed, not kept.
        let (parts, body) = req.into_parts();
        let again = body.is_end_stream().then(|| h2_client::head_copy(&parts));
        let mut req = http::Request::from_parts(parts, body);
        async move {
            let pool = &self.pool;
            let mut setup = None;
            let mut sends = 0;
            let mut rsp = loop {
                sends += 1;
                // Connecting is boxed so that the per-request future stays small: a
                // connection is made rarely.
                let conn = match pool.h2_open() {
                    Some(conn) => conn,
                    None => Box::pin(pool.connect_h2_timed(&mut setup)).await?,
                };
                let ready = match conn.ready().await {
                    Ok(ready) => ready,
                    // Closed or going away, with nothing sent: once more on a new connection.
                    Err(error) => {
                        tracing::debug!(%error, "upstream HTTP/2 connection refused a stream");
                        let conn = Box::pin(pool.connect_h2_timed(&mut setup)).await?;
                        conn.ready().await?
                    }
                };
                let sent = match h2_client::send(ready, req) {
                    Ok(response) => response.await,
                    Err(error) => Err(error),
                };
                match sent {
                    Ok(rsp) => break rsp.map(ProxyBody::Recv),
                    Err(error) if h2_client::unprocessed(&error) => match &again {
                        Some(head) if sends < MAX_SENDS_REFUSED => {
                            tracing::debug!(%error, "upstream refused a request; sending it again");
                            req = head.clone().map(|()| ProxyBody::empty());
                        }
                        _ => return Err(h2_client::Refused(error).into()),
                    },
                    Err(error) => return Err(error.into()),
                }
            };
            if let Some(setup) = setup {
                rsp.extensions_mut().insert(NewConnection(setup));
            }
            Ok(rsp)
        }
    }

    async fn send_h1(
        self,
        slot: Arc<Slot>,
        req: http::Request<ProxyBody>,
    ) -> Result<http::Response<ProxyBody>, Error> {
        let pool = &self.pool;
        // A downstream HTTP/1.1 connection sends its next request only once the
        // previous response has ended, so its upstream connection is done with it
        // too, or about to be: wait for it rather than racing to open another.
        let sticky = match slot.take(pool) {
            Some(mut sender) => sender.ready().await.ok().map(|()| sender),
            None => None,
        };
        let Some(mut reused) = sticky.or_else(|| pool.checkout()) else {
            // Boxed, as for HTTP/2: a new connection is the rare case.
            return Box::pin(self.send_fresh(&slot, req)).await;
        };
        let sent = reused.try_send_request(req);
        slot.keep(reused, pool);
        // The error is taken apart before the next `await`, so that this future does
        // not keep room for it (and the request in it) beside everything else.
        let unsent = match sent.await {
            Ok(rsp) => return Ok(rsp.map(ProxyBody::Incoming)),
            Err(mut e) => match e.take_message() {
                Some(req) => req,
                None => return Err(e.into_error().into()),
            },
        };
        // The peer closed the idle connection before the request went out: nothing
        // was sent, so it is safe to send it on a new connection.
        Box::pin(self.send_fresh(&slot, unsent)).await
    }

    async fn send_fresh(
        &self,
        slot: &Slot,
        req: http::Request<ProxyBody>,
    ) -> Result<http::Response<ProxyBody>, Error> {
        let start = Instant::now();
        let mut sender = self.pool.connect_h1().await?;
        let setup = start.elapsed();
        let sent = sender.send_request(req);
        slot.keep(sender, &self.pool);
        let mut rsp = sent.await?.map(ProxyBody::Incoming);
        rsp.extensions_mut().insert(NewConnection(setup));
        Ok(rsp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    /// An HTTP/1.1 server answering "ok"; every connection it accepts, then sees closed, is
    /// reported on the channels.
    async fn server() -> (
        SocketAddr,
        mpsc::UnboundedReceiver<()>,
        mpsc::UnboundedReceiver<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (opened_tx, opened) = mpsc::unbounded_channel();
        let (closed_tx, closed) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                opened_tx.send(()).unwrap();
                let closed_tx = closed_tx.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(ProxyBody::full(
                            "ok",
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                    let _ = closed_tx.send(());
                });
            }
        });
        (addr, opened, closed)
    }

    async fn get(client: &Client, slot: &Arc<Slot>) -> String {
        let req = http::Request::builder()
            .uri("/")
            .header("host", "test")
            .body(ProxyBody::empty())
            .unwrap();
        let rsp = client.clone().send(slot.clone(), req).await.unwrap();
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    fn client(addr: SocketAddr, idle_timeout: Duration) -> Client {
        let config = ClientConfig {
            idle_timeout,
            ..ClientConfig::default()
        };
        NewClient::new(config).new_service(Endpoint::plain(addr, Http::Http1))
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout_without_further_requests() {
        let (addr, mut opened, mut closed) = server().await;
        let idle_timeout = Duration::from_millis(300);
        // The client stays alive throughout: only the idle timeout may close the connection.
        let client = client(addr, idle_timeout);
        let slot = Arc::new(Slot::new());
        assert_eq!(get(&client, &slot).await, "ok");
        assert_eq!(get(&client, &slot).await, "ok");
        opened.recv().await.unwrap();
        let idle_since = Instant::now();
        drop(slot);
        tokio::time::timeout(Duration::from_secs(10), closed.recv())
            .await
            .expect("the idle connection was never closed")
            .unwrap();
        assert!(
            idle_since.elapsed() >= idle_timeout,
            "closed after {:?}, before the idle timeout",
            idle_since.elapsed()
        );
        assert!(
            opened.try_recv().is_err(),
            "one connection served both requests"
        );

        // The pool works on: the next request opens a new connection.
        let slot = Arc::new(Slot::new());
        assert_eq!(get(&client, &slot).await, "ok");
        opened.recv().await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_reused_within_the_idle_timeout_stays_open() {
        let (addr, mut opened, mut closed) = server().await;
        let idle_timeout = Duration::from_secs(1);
        let client = client(addr, idle_timeout);
        for _ in 0..4 {
            // Each downstream connection takes the pooled connection and gives it back, well
            // within the idle timeout even on a loaded machine.
            let slot = Arc::new(Slot::new());
            assert_eq!(get(&client, &slot).await, "ok");
            drop(slot);
            tokio::time::sleep(idle_timeout / 10).await;
        }
        opened.recv().await.unwrap();
        assert!(
            opened.try_recv().is_err(),
            "every request reused one connection"
        );
        assert!(closed.try_recv().is_err(), "closed while in use");
        // Once left alone, it is closed.
        tokio::time::timeout(Duration::from_secs(10), closed.recv())
            .await
            .expect("the idle connection was never closed")
            .unwrap();
    }
}
