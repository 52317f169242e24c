//! The body of responses the proxy sends.

use crate::h2_client::RecvBody;
use bytes::Bytes;
use conduit_error::Error;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A response body: streamed from upstream, or made by the proxy itself.
#[pin_project::pin_project(project = Projected)]
#[derive(Debug)]
pub enum ProxyBody {
    /// Streamed from the peer, through hyper.
    Incoming(#[pin] Incoming),
    /// Streamed from an HTTP/2 endpoint.
    Recv(#[pin] RecvBody),
    /// Made by the proxy (error responses).
    Full(Option<Bytes>),
}

impl ProxyBody {
    /// A body with no bytes.
    pub fn empty() -> Self {
        ProxyBody::Full(None)
    }

    /// A body with these bytes.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        ProxyBody::Full((!bytes.is_empty()).then_some(bytes))
    }
}

impl From<Incoming> for ProxyBody {
    fn from(b: Incoming) -> Self {
        ProxyBody::Incoming(b)
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match self.project() {
            Projected::Incoming(b) => b.poll_frame(cx).map_err(Error::from),
            Projected::Recv(b) => b.poll_frame(cx),
            Projected::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Incoming(b) => b.is_end_stream(),
            ProxyBody::Recv(b) => b.is_end_stream(),
            ProxyBody::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Incoming(b) => b.size_hint(),
            ProxyBody::Recv(b) => b.size_hint(),
            ProxyBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}
