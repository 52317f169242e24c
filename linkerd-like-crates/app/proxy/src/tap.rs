//! The tap port: the proxy's `Tap` and `ProxyStats` gRPC services, over mTLS, answering the
//! controller's identity only (each refuses any other with PERMISSION_DENIED, and a client
//! without a certificate with UNAUTHENTICATED; see `conduit_tap::authorize`).

use crate::stats::ProxyStatsServer;
use bytes::Bytes;
use conduit_http::Http;
use conduit_io::PrefixedIo;
use conduit_stack::drain;
use conduit_tap::{ClientIdentity, TapServer};
use conduit_tls::ServerTls;
use conduit_transport::{Accepted, Listener};
use std::task::{Context, Poll};
use std::time::Duration;

/// Handshakes slower than this are cut off.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `tap` and `stats` on `listener`, at most `max_connections` at a time, until
/// `drain` is signaled; accepting is the proxy's own loop (`conduit_app_core::serve`).
pub(crate) async fn serve(
    listener: Listener,
    max_connections: usize,
    tls: ServerTls,
    tap: TapServer,
    stats: ProxyStatsServer,
    drain: drain::Watch,
) {
    conduit_app_core::serve(listener, max_connections, drain, move |accepted, drain| {
        let svc = TapPort {
            tap: tap.clone().into_service(),
            stats: ProxyStatsApi::new(stats.clone()),
        };
        serve_connection(accepted, tls.clone(), svc, drain)
    })
    .await
}

type TapApi = conduit_api::tap::tap_server::TapServer<TapServer>;
type ProxyStatsApi = conduit_api::stats::proxy_stats_server::ProxyStatsServer<ProxyStatsServer>;

/// The tap port's two services, told apart by the gRPC path's service name.
#[derive(Clone, Debug)]
struct TapPort {
    tap: TapApi,
    stats: ProxyStatsApi,
}

const STATS_PATH: &str = "/conduit.stats.ProxyStats/";

impl<B> tower_service::Service<http::Request<B>> for TapPort
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Both are always ready (tonic's generated servers are).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path().starts_with(STATS_PATH) {
            self.stats.call(req)
        } else {
            self.tap.call(req)
        }
    }
}

async fn serve_connection<S>(accepted: Accepted, tls: ServerTls, svc: S, drain: drain::Watch)
where
    S: conduit_http::server::HttpService<tonic::body::Body>,
{
    let client = accepted.client;
    let stream = match conduit_tls::within(HANDSHAKE_TIMEOUT, tls.accept(accepted.stream)).await {
        Ok(stream) => stream,
        Err(error) => {
            tracing::debug!(%error, %client, "tap: TLS handshake failed");
            return;
        }
    };
    let identity =
        conduit_tls::peer_identity(stream.get_ref().1).map(|id| ClientIdentity(id.into()));
    let svc = WithIdentity {
        inner: svc,
        identity,
    };
    let io = PrefixedIo::new(Bytes::new(), stream);
    // A tap has no work in flight worth finishing, and its stream never ends by itself: at
    // shutdown its connection is closed at once instead of holding the drain until the grace
    // period is over.
    let mut shutdown = drain.clone();
    let config = conduit_http::server::ServerConfig::default();
    tokio::select! {
        res = conduit_http::server::serve(io, Http::H2, svc, &config, drain) => {
            if let Err(error) = res {
                tracing::debug!(%error, %client, "tap connection closed with an error");
            }
        }
        () = shutdown.signaled() => {
            tracing::debug!(%client, "tap connection closed: the proxy is shutting down");
        }
    }
}

/// Puts the connection's client identity into each request, for `TapServer` to check.
#[derive(Clone, Debug)]
struct WithIdentity<S> {
    inner: S,
    identity: Option<ClientIdentity>,
}

impl<S, B> tower_service::Service<http::Request<B>> for WithIdentity<S>
where
    S: tower_service::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> S::Future {
        if let Some(id) = &self.identity {
            req.extensions_mut().insert(id.clone());
        }
        self.inner.call(req)
    }
}
