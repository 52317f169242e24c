//! Pooled clients, one per endpoint.

use crate::Http;
use conduit_stack::NewService;
use conduit_transport::ConnectError;
use hyper::body::Incoming;
use hyper_util::client::legacy;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// How clients connect and pool.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
    /// How long an idle HTTP/1.1 connection stays in the pool.
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
    /// What to speak.
    pub http: Http,
}

/// Builds a [`Client`] per [`Endpoint`].
#[derive(Clone, Debug, Default)]
pub struct NewClient {
    config: ClientConfig,
}

impl NewClient {
    /// Clients configured by `config`.
    pub fn new(config: ClientConfig) -> Self {
        Self { config }
    }
}

impl NewService<Endpoint> for NewClient {
    type Service = Client;

    fn new_service(&self, endpoint: Endpoint) -> Client {
        let connect = Connect {
            addr: endpoint.addr,
            timeout: self.config.connect_timeout,
        };
        let mut builder = legacy::Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(self.config.idle_timeout)
            .pool_max_idle_per_host(self.config.max_idle_per_endpoint)
            // Requests are rewritten to origin-form; the Host header the client sent is kept.
            .set_host(true)
            .http2_only(endpoint.http == Http::H2);
        Client {
            inner: builder.build(connect),
            endpoint,
        }
    }
}

/// A pooled client to one endpoint. Cheap to clone; clones share the pool.
#[derive(Clone, Debug)]
pub struct Client {
    inner: legacy::Client<Connect, Incoming>,
    endpoint: Endpoint,
}

impl Client {
    /// Sends a request; its URI must be absolute (or authority-form for `CONNECT`).
    pub fn request(&self, req: http::Request<Incoming>) -> legacy::ResponseFuture {
        self.inner.request(req)
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// Connects to one address, whatever the request's URI says.
#[derive(Clone, Debug)]
struct Connect {
    addr: SocketAddr,
    timeout: Duration,
}

impl tower_service::Service<http::Uri> for Connect {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        // Boxed once per connection, not per request.
        let (addr, timeout) = (self.addr, self.timeout);
        Box::pin(async move {
            let stream = conduit_transport::connect(addr, timeout).await?;
            Ok(TokioIo::new(stream))
        })
    }
}
