//! HTTP/2 to an endpoint on the `h2` crate's client directly.
//!
//! hyper's HTTP/2 client sends each request through a channel to the connection's task, which
//! spawns one more task per request to wait for the response and hand it back through a
//! oneshot. `h2`'s handle opens the stream from the caller's task and gives the caller the
//! response future itself: per request, two cross-task hand-offs and a task allocation fewer,
//! and the caller's task is woken once, by the connection, when the response arrives.
//!
//! What hyper did around `h2` is kept: the same window sizes, send buffer and header-list
//! limit; push disabled; request bodies streamed with backpressure (see [`pipe`]); response
//! bodies release flow-control capacity as they are read, so a slow reader slows its sender.
//! `CONNECT` tunnels stay on hyper's client (see `client`), which turns the stream into an
//! upgrade.

use bytes::{Buf, Bytes};
use conduit_error::Error;
use conduit_io::{Coalesced, Io};
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

// hyper's client defaults, so that replacing it changes no behaviour on the wire.
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const MAX_SEND_BUFFER: usize = 1024 * 1024;
const MAX_HEADER_LIST: u32 = 16 * 1024;

/// One HTTP/2 connection; clones share it.
#[derive(Clone, Debug)]
pub(crate) struct H2Connection {
    send: SendRequest<Bytes>,
    /// Set by the connection's task when the connection has ended.
    closed: Arc<AtomicBool>,
}

impl H2Connection {
    /// Makes the HTTP/2 handshake on `io` and spawns the connection's task.
    pub(crate) async fn handshake(io: Coalesced<Box<dyn Io>>) -> Result<Self, Error> {
        let (send, conn) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_send_buffer_size(MAX_SEND_BUFFER)
            .max_header_list_size(MAX_HEADER_LIST)
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await?;
        let closed = Arc::new(AtomicBool::new(false));
        let done = closed.clone();
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%error, "upstream HTTP/2 connection failed");
            }
            done.store(true, Ordering::Release);
        });
        Ok(Self { send, closed })
    }

    /// Whether the connection has ended (it may also be going away: see [`Self::ready`]).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// A handle ready to open a stream, or the error that says this connection will take
    /// no more (closed, or going away): nothing has been sent on it, so the caller may use
    /// another connection.
    pub(crate) async fn ready(&self) -> Result<SendRequest<Bytes>, h2::Error> {
        let mut send = self.send.clone();
        match poll_fn(|cx| send.poll_ready(cx)).await {
            Ok(()) => Ok(send),
            Err(e) => {
                self.closed.store(true, Ordering::Release);
                Err(e)
            }
        }
    }
}

/// Sends `req` (its URI absolute) on a handle from [`H2Connection::ready`].
pub(crate) async fn send(
    mut send: SendRequest<Bytes>,
    req: http::Request<Incoming>,
) -> Result<http::Response<RecvBody>, Error> {
    let (parts, body) = req.into_parts();
    let eos = body.is_end_stream();
    let (response, stream) = send.send_request(http::Request::from_parts(parts, ()), eos)?;
    if !eos {
        tokio::spawn(async move {
            if let Err(error) = pipe(body, stream).await {
                tracing::debug!(%error, "request body not sent whole");
            }
        });
    }
    let (parts, recv) = response.await?.into_parts();
    let body = RecvBody::new(recv, &parts.headers);
    Ok(http::Response::from_parts(parts, body))
}

/// Streams a request body to its HTTP/2 stream.
///
/// Each chunk goes to `h2` once the stream has send capacity for at least one byte, and `h2`
/// holds what the window cannot take yet; the next chunk is not handed over until that is
/// sent, so one chunk per stream is buffered, never more. Capacity is claimed only for data in
/// hand (claiming it ahead could starve the connection's other streams of the window). A
/// reset from the peer ends the pipe at once.
async fn pipe(mut body: Incoming, mut stream: SendStream<Bytes>) -> Result<(), Error> {
    loop {
        let frame = poll_fn(|cx| {
            if let Poll::Ready(reset) = stream.poll_reset(cx) {
                let error = match reset {
                    Ok(reason) => h2::Error::from(reason),
                    Err(e) => e,
                };
                return Poll::Ready(Err(Error::from(error)));
            }
            Pin::new(&mut body)
                .poll_frame(cx)
                .map(|f| f.transpose().map_err(Error::from))
        })
        .await;
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                stream.send_data(Bytes::new(), true)?;
                return Ok(());
            }
            Err(e) => {
                stream.send_reset(h2::Reason::CANCEL);
                return Err(e);
            }
        };
        let frame = match frame.into_data() {
            Ok(data) => {
                let eos = body.is_end_stream();
                if data.has_remaining() {
                    stream.reserve_capacity(1);
                    while stream.capacity() == 0 {
                        match poll_fn(|cx| stream.poll_capacity(cx)).await {
                            Some(Ok(_)) => {}
                            Some(Err(e)) => return Err(e.into()),
                            None => return Err("HTTP/2 stream closed while sending".into()),
                        }
                    }
                }
                stream.send_data(data, eos)?;
                if eos {
                    return Ok(());
                }
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(trailers) = frame.into_trailers() {
            stream.send_trailers(trailers)?;
            return Ok(());
        }
    }
}

/// A response body received on an HTTP/2 stream.
#[derive(Debug)]
pub struct RecvBody {
    recv: RecvStream,
    data_done: bool,
    /// What `content-length` says is left, when it says.
    remaining: Option<u64>,
}

impl RecvBody {
    fn new(recv: RecvStream, headers: &http::HeaderMap) -> Self {
        let remaining = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Self {
            recv,
            data_done: false,
            remaining,
        }
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Reading is what opens the window again: the sender goes no faster
                    // than the reader of this body.
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    if let Some(left) = &mut this.remaining {
                        *left = left.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e.into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
