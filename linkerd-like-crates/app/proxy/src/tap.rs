//! The tap server: the proxy's `Tap` gRPC service on its tap port, over mTLS, answering the
//! controller's identity only (`TapServer` refuses any other with PERMISSION_DENIED, and a
//! client without a certificate with UNAUTHENTICATED).

use bytes::Bytes;
use conduit_http::Http;
use conduit_io::PrefixedIo;
use conduit_stack::drain;
use conduit_tap::{ClientIdentity, TapServer};
use conduit_tls::ServerTls;
use conduit_transport::{Accepted, Listener};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Handshakes slower than this are cut off.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `server` on `listener`, at most `max_connections` at a time, until `drain` is
/// signaled; accepting is the proxy's own loop (`conduit_app_core::serve`).
pub(crate) async fn serve(
    listener: Listener,
    max_connections: usize,
    tls: ServerTls,
    server: TapServer,
    drain: drain::Watch,
) {
    conduit_app_core::serve(listener, max_connections, drain, move |accepted, drain| {
        let (tls, svc) = (tls.clone(), server.clone().into_service());
        serve_connection(accepted, tls, svc, drain)
    })
    .await
}

async fn serve_connection<S>(accepted: Accepted, tls: ServerTls, svc: S, drain: drain::Watch)
where
    S: conduit_http::server::HttpService<tonic::body::Body>,
{
    let client = accepted.client;
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(accepted.stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::debug!(%error, %client, "tap: TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%client, "tap: TLS handshake timed out");
            return;
        }
    };
    let identity = conduit_tls::peer_identity(stream.get_ref().1)
        .map(|id| ClientIdentity(Arc::from(id.as_str())));
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
