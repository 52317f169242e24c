//! The proxy's `Tap` gRPC service.

use crate::filter::Match;
use crate::registry::{Subscription, Taps};
use conduit_api::tap as api;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::{Request, Response, Status};

/// The mTLS identity of the client of a tap request, put into the request's extensions by
/// whatever terminated its TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity(pub Arc<str>);

/// Serves `Tap.Observe` over a proxy's taps, to one identity only.
#[derive(Clone, Debug)]
pub struct TapServer {
    taps: Taps,
    authorized: Arc<str>,
}

/// A tap's events, as a gRPC response stream.
#[derive(Debug)]
pub struct EventStream(Subscription);

impl TapServer {
    /// Serves `taps` to clients whose identity is `authorized` (the controller's).
    pub fn new(taps: Taps, authorized: impl Into<Arc<str>>) -> Self {
        Self {
            taps,
            authorized: authorized.into(),
        }
    }

    /// As a tonic service.
    pub fn into_service(self) -> api::tap_server::TapServer<Self> {
        api::tap_server::TapServer::new(self)
    }
}

/// Lets `req` through only if its client is `authorized`: PERMISSION_DENIED for another
/// identity, UNAUTHENTICATED without one. Every service on the tap port checks with it.
pub fn authorize<T>(req: &Request<T>, authorized: &str) -> Result<(), Status> {
    match req.extensions().get::<ClientIdentity>() {
        Some(ClientIdentity(id)) if **id == *authorized => Ok(()),
        Some(ClientIdentity(id)) => Err(Status::permission_denied(format!(
            "{id} may not use this proxy's tap port: only {authorized} may"
        ))),
        None => Err(Status::unauthenticated(format!(
            "the tap port needs mTLS as {authorized}"
        ))),
    }
}

#[tonic::async_trait]
impl api::tap_server::Tap for TapServer {
    type ObserveStream = EventStream;

    async fn observe(
        &self,
        req: Request<api::ObserveRequest>,
    ) -> Result<Response<EventStream>, Status> {
        authorize(&req, &self.authorized)?;
        let req = req.into_inner();
        let filter =
            Match::from_api(req.r#match).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let sub = self.taps.subscribe(filter, req.limit, req.max_rps);
        Ok(Response::new(EventStream(sub)))
    }
}

impl tokio_stream::Stream for EventStream {
    type Item = Result<api::TapEvent, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.get_mut().0)
            .poll_next(cx)
            .map(|e| e.map(Ok))
    }
}
