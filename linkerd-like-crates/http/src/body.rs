//! The body of the requests and responses the proxy carries.

use crate::h2_body::RecvBody;
use bytes::Bytes;
use conduit_error::Error;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A request or response body: streamed from a peer, or made by the proxy itself.
#[pin_project::pin_project(project = Projected)]
#[derive(Debug)]
pub enum ProxyBody {
    /// Streamed from an HTTP/1 peer (or a `CONNECT` tunnel's HTTP/2 endpoint), through hyper.
    Incoming(#[pin] Incoming),
    /// Streamed from an HTTP/2 peer.
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
