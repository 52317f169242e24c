//! Bodies over `h2` streams, for both the client and the server side: [`RecvBody`] reads one,
//! [`pipe`] writes one, and [`Tunnel`] is a `CONNECT` stream as a byte stream.
//!
//! Flow control is where the care goes. A received chunk's window is released only when the
//! reader takes it, so a slow reader slows its sender; a chunk is handed to `h2` only when the
//! stream has window for it, so one chunk per stream is buffered, never more.
//!
//! A request body that the server leaves unread (its upstream answered without reading it
//! all) is drained for a moment rather than reset at once; see [`RecvBody::request`].

use bytes::{Buf, Bytes};
use conduit_error::Error;
use h2::{Reason, RecvStream, SendStream};
use http_body::{Body, Frame, SizeHint};
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How long a dropped request body is drained at most: as long as `h2` remembers a stream it
/// reset, so a body drained this long gains nothing from being reset instead.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// How much of a dropped request body is drained at most: the tail of a body already on its
/// way, not an upload the upstream declined.
pub(crate) const DRAIN_MAX_BYTES: usize = 64 * 1024;

/// A body received on an HTTP/2 stream.
#[derive(Debug)]
pub struct RecvBody {
    /// Taken only by `drop`, to drain it.
    recv: Option<RecvStream>,
    data_done: bool,
    /// What `content-length` says is left, when it says.
    remaining: Option<u64>,
    /// Drained rather than reset when dropped unfinished (a request body).
    drain: bool,
}

impl RecvBody {
    /// A response body, on the client side. Dropped unfinished, `h2` resets the stream
    /// (CANCEL): the server should stop sending what nobody will read.
    pub(crate) fn response(recv: RecvStream, headers: &http::HeaderMap) -> Self {
        Self::new(recv, headers, false)
    }

    /// A request body, on the server side. Dropped before the client has sent all of it (its
    /// upstream answered without reading it all, as servers may), what is left is read and
    /// discarded for up to [`DRAIN_TIMEOUT`] and [`DRAIN_MAX_BYTES`], so that the stream ends
    /// cleanly once the client finishes.
    ///
    /// Reset at once instead (RST_STREAM NO_ERROR, which `h2` sends when the response is done
    /// and nobody reads the request), the client's DATA frames already in flight arrive for a
    /// stream `h2` may have forgotten: it keeps only the last 50 resets. Each such frame then
    /// counts as the client's protocol error, and at 1,024 of them on one connection `h2`
    /// closes it (GOAWAY ENHANCE_YOUR_CALM), failing every request on it. Between two proxies,
    /// where one connection carries all of a pod's requests to another, a stream of early
    /// answers to POSTs reached that within seconds.
    pub(crate) fn request(recv: RecvStream, headers: &http::HeaderMap) -> Self {
        Self::new(recv, headers, true)
    }

    fn new(recv: RecvStream, headers: &http::HeaderMap, drain: bool) -> Self {
        let remaining = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Self {
            recv: Some(recv),
            data_done: false,
            remaining,
            drain,
        }
    }
}

impl Drop for RecvBody {
    fn drop(&mut self) {
        let Some(recv) = self.recv.take() else {
            return;
        };
        if !self.drain || recv.is_end_stream() {
            return;
        }
        // Outside a runtime (the proxy exiting) the stream is reset, as it would be anyway.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(drain(recv));
        }
    }
}

/// Reads and discards `recv` to its end, within the drain's bounds; dropped past them, the
/// stream is reset.
async fn drain(mut recv: RecvStream) {
    let mut left = DRAIN_MAX_BYTES;
    let read = async {
        while let Some(Ok(data)) = poll_fn(|cx| recv.poll_data(cx)).await {
            let _ = recv.flow_control().release_capacity(data.len());
            left = match left.checked_sub(data.len()) {
                Some(left) => left,
                None => return,
            };
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, read).await;
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        let Some(recv) = this.recv.as_mut() else {
            return Poll::Ready(None);
        };
        if !this.data_done {
            match ready!(recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Reading is what opens the window again: the sender goes no faster
                    // than the reader of this body.
                    let _ = recv.flow_control().release_capacity(data.len());
                    if let Some(left) = &mut this.remaining {
                        *left = left.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => this.data_done = true,
            }
        }
        match ready!(recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e.into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.as_ref().is_none_or(RecvStream::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// Streams `body` to its HTTP/2 stream, trailers included.
///
/// Each chunk goes to `h2` once the stream has send capacity for at least one byte, and `h2`
/// holds what the window cannot take yet; the next chunk is not read until that is sent.
/// Capacity is claimed only for data in hand (claiming it ahead could starve the connection's
/// other streams of the window). A reset from the peer ends the pipe at once; a body that
/// fails resets the stream, with the peer's reason when the failure was an HTTP/2 reset on
/// the other side, else with `reason`.
pub(crate) async fn pipe<B>(
    body: B,
    mut stream: SendStream<Bytes>,
    reason: Reason,
) -> Result<(), Error>
where
    B: Body<Data = Bytes, Error: Into<Error>>,
{
    let mut body = std::pin::pin!(body);
    loop {
        let frame = poll_fn(|cx| {
            if let Poll::Ready(reset) = stream.poll_reset(cx) {
                return Poll::Ready(Err(Error::from(reset_error(reset))));
            }
            body.as_mut()
                .poll_frame(cx)
                .map(|f| f.transpose().map_err(Into::into))
        })
        .await;
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                stream.send_data(Bytes::new(), true)?;
                return Ok(());
            }
            Err(e) => {
                // NO_ERROR (a peer's connection going away in good order) would tell the
                // client that stopping here is fine: a cut body is not.
                let reason = conduit_error::cause_ref::<h2::Error>(&*e)
                    .and_then(h2::Error::reason)
                    .filter(|r| *r != Reason::NO_ERROR)
                    .unwrap_or(reason);
                stream.send_reset(reason);
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

/// An HTTP/2 `CONNECT` stream, once answered with 2xx, as a byte stream: DATA frames both
/// ways, END_STREAM as the half-close. Dropped before both sides ended, `h2` resets the
/// stream (CANCEL), so the peer learns that the tunnel was cut.
#[derive(Debug)]
pub(crate) struct Tunnel {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Received and not yet read.
    pending: Bytes,
    shut: bool,
}

impl Tunnel {
    pub(crate) fn new(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        Self {
            send,
            recv,
            pending: Bytes::new(),
            shut: false,
        }
    }
}

/// What `SendStream::poll_reset` reports, as one error: the peer's reset or the stream's own.
fn reset_error(reset: Result<Reason, h2::Error>) -> h2::Error {
    reset.map_or_else(|e| e, h2::Error::from)
}

fn io_error(e: h2::Error) -> io::Error {
    match e.reason() {
        Some(Reason::NO_ERROR | Reason::CANCEL) => io::Error::new(io::ErrorKind::BrokenPipe, e),
        _ => io::Error::other(e),
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.pending.is_empty() {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    this.pending = data;
                }
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let send = &mut self.send;
        // Only what the window takes now is copied and queued, so nothing piles up in `h2`.
        send.reserve_capacity(buf.len());
        loop {
            let n = send.capacity().min(buf.len());
            if n > 0 {
                send.send_data(Bytes::copy_from_slice(&buf[..n]), false)
                    .map_err(io_error)?;
                return Poll::Ready(Ok(n));
            }
            if let Poll::Ready(reset) = send.poll_reset(cx) {
                return Poll::Ready(Err(io_error(reset_error(reset))));
            }
            match ready!(send.poll_capacity(cx)) {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection's task writes what is queued.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.shut {
            self.shut = true;
            self.send.send_data(Bytes::new(), true).map_err(io_error)?;
        }
        Poll::Ready(Ok(()))
    }
}
