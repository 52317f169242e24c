//! The named futures of a routed request. Each is a struct rather than an `async` block,
//! so that it holds the future it wraps once: an `async fn` holds its argument and the
//! future it awaits side by side, and a request's future is moved and allocated whole on
//! every request.

use crate::balancer::{Backend, Balancer};
use conduit_balance::Picked;
use conduit_error::Error;
use conduit_http::client::NewConnection;
use conduit_http::{errors, Deadline, ProxyBody};
use conduit_metrics::{DestinationLabels, ResponseClass, RouteLabel, ServerIdLabel};
use conduit_tls::Name;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// The profile route a request matched: its name labels the response's metrics, and its
/// timeout bounds the whole wait for response headers (queueing for endpoints included).
#[derive(Debug, Default)]
pub(super) struct RouteInfo {
    route: Option<Arc<conduit_route::Route>>,
    timeout: Option<Duration>,
}

impl RouteInfo {
    pub(super) fn of<B>(balancer: &Balancer, req: &http::Request<B>) -> Self {
        let routes = balancer.routes();
        match routes.find(req) {
            Some(route) => RouteInfo {
                timeout: route.timeout(),
                route: Some(route.clone()),
            },
            None => RouteInfo::default(),
        }
    }

    /// Runs `handle` under the route's timeout and labels its response, error or not.
    pub(super) fn apply<F>(self, grpc: bool, handle: F) -> Routed<F> {
        Routed {
            handle: Deadline::new(handle, self.timeout),
            route: self.route,
            grpc,
        }
    }
}

/// A request's future under its route. A named future rather than an `async fn`: that would
/// hold `handle` twice, as its argument and as the future it awaits, and double the size of
/// every balanced request's allocation.
#[pin_project::pin_project]
pub(super) struct Routed<F> {
    #[pin]
    handle: Deadline<F>,
    route: Option<Arc<conduit_route::Route>>,
    grpc: bool,
}

impl<F> Future for Routed<F>
where
    F: Future<Output = Result<http::Response<ProxyBody>, Error>>,
{
    type Output = Result<http::Response<ProxyBody>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.handle.poll(cx));
        let Some(route) = this.route.take() else {
            return Poll::Ready(result);
        };
        let mut rsp = result.unwrap_or_else(|e| errors::response(&e, *this.grpc));
        if let Some(failure) = route.is_failure(rsp.status()) {
            rsp.extensions_mut().insert(ResponseClass { failure });
        }
        rsp.extensions_mut()
            .insert(RouteLabel(route.name().clone()));
        Poll::Ready(Ok(rsp))
    }
}

/// A request's future whose failure becomes an error response.
#[pin_project::pin_project]
pub(super) struct Respond<F> {
    #[pin]
    pub(super) handle: F,
    pub(super) grpc: bool,
}

impl<F> Future for Respond<F>
where
    F: Future<Output = Result<http::Response<ProxyBody>, Error>>,
{
    type Output = Result<http::Response<ProxyBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let rsp = std::task::ready!(this.handle.poll(cx));
        Poll::Ready(Ok(rsp.unwrap_or_else(|e| errors::response(&e, *this.grpc))))
    }
}

/// A request's future on the endpoint the balancer picked: reports its latency back to the
/// balancer and labels the response with the endpoint.
#[pin_project::pin_project]
pub(super) struct ToPicked<F> {
    #[pin]
    forward: F,
    picked: Option<Picked<SocketAddr, Backend>>,
    labels: Option<DestinationLabels>,
    server_id: Option<Name>,
    endpoint: SocketAddr,
}

impl<F> ToPicked<F> {
    pub(super) fn new(
        forward: F,
        picked: Picked<SocketAddr, Backend>,
        labels: Option<DestinationLabels>,
        server_id: Option<Name>,
        endpoint: SocketAddr,
    ) -> Self {
        Self {
            forward,
            picked: Some(picked),
            labels,
            server_id,
            endpoint,
        }
    }
}

impl<F> Future for ToPicked<F>
where
    F: Future<Output = Result<http::Response<ProxyBody>, Error>>,
{
    type Output = Result<http::Response<ProxyBody>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let rsp = std::task::ready!(this.forward.poll(cx));
        // Time spent opening a connection says nothing of the endpoint's latency: counted, a
        // TLS handshake would make a fresh endpoint look slow for a whole decay period.
        let setup = rsp
            .as_ref()
            .ok()
            .and_then(|r| r.extensions().get::<NewConnection>())
            .map_or(Duration::ZERO, |c| c.0);
        if let Some(mut picked) = this.picked.take() {
            picked.observe_excluding(setup);
        }
        let mut rsp = rsp?;
        if let Some(id) = this.server_id.take() {
            rsp.extensions_mut().insert(ServerIdLabel(id.into()));
        }
        if let Some(labels) = this.labels.take() {
            rsp.extensions_mut().insert(labels);
        }
        rsp.extensions_mut()
            .insert(conduit_tap::EndpointAddr(*this.endpoint));
        Poll::Ready(Ok(rsp))
    }
}
