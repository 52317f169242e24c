//! HTTP/2 to an endpoint on the `h2` crate's client directly.
//!
//! hyper's HTTP/2 client sends each request through a channel to the connection's task, which
//! spawns one more task per request to wait for the response and hand it back through a
//! oneshot. `h2`'s handle opens the stream from the caller's task and gives the caller the
//! response future itself: per request, two cross-task hand-offs and a task allocation fewer,
//! and the caller's task is woken once, by the connection, when the response arrives.
//!
//! What hyper did around `h2` is kept: the same window sizes, send buffer and header-list
//! limit; push disabled; request bodies streamed with backpressure and response bodies
//! released as they are read (see `h2_body`).
//! `CONNECT` tunnels stay on hyper's client (see `client`), which turns the stream into an
//! upgrade.

use crate::h2_body::{pipe, RecvBody};
use crate::ProxyBody;
use bytes::Bytes;
use conduit_error::Error;
use conduit_io::{Batched, Io};
use h2::client::SendRequest;
use http_body::Body;
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
    pub(crate) async fn handshake(io: Batched<Box<dyn Io>>) -> Result<Self, Error> {
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
    pub(crate) async fn ready(self) -> Result<SendRequest<Bytes>, h2::Error> {
        let Self { mut send, closed } = self;
        match poll_fn(|cx| send.poll_ready(cx)).await {
            Ok(()) => Ok(send),
            Err(e) => {
                closed.store(true, Ordering::Release);
                Err(e)
            }
        }
    }
}

/// Opens a stream for `req` (its URI absolute) on a handle from [`H2Connection::ready`];
/// the future is its response.
///
/// The stream is opened here rather than in the future, so that the future holds the small
/// response handle instead of the request: a request's future is moved and allocated on every
/// request, and each byte it holds is copied each time.
pub(crate) fn send(
    mut send: SendRequest<Bytes>,
    req: http::Request<ProxyBody>,
) -> Result<impl Future<Output = Result<http::Response<RecvBody>, h2::Error>> + Send, h2::Error> {
    let (parts, body) = req.into_parts();
    let eos = body.is_end_stream();
    let (response, stream) = send.send_request(http::Request::from_parts(parts, ()), eos)?;
    if !eos {
        tokio::spawn(async move {
            if let Err(error) = pipe(body, stream, h2::Reason::CANCEL).await {
                tracing::debug!(%error, "request body not sent whole");
            }
        });
    }
    Ok(async move {
        let (parts, recv) = response.await?.into_parts();
        let body = RecvBody::response(recv, &parts.headers);
        Ok(http::Response::from_parts(parts, body))
    })
}

/// Whether the upstream refused the stream unprocessed: it was past the last stream of the
/// upstream's GOAWAY, or reset with REFUSED_STREAM (RFC 9113, section 8.7). Such a request
/// may be sent again whatever its method. `h2` gives a remote GOAWAY's error only to those
/// streams (and to streams opened after it); the streams it let finish end otherwise.
pub(crate) fn unprocessed(error: &h2::Error) -> bool {
    error.is_remote() && (error.is_go_away() || error.reason() == Some(h2::Reason::REFUSED_STREAM))
}

/// A copy of a bodyless request's head, to send it again should it be refused. Extensions
/// are not copied: `h2` reads none but extended CONNECT's, and CONNECT does not come here.
pub(crate) fn head_copy(parts: &http::request::Parts) -> http::Request<()> {
    let mut head = http::Request::new(());
    *head.method_mut() = parts.method.clone();
    *head.uri_mut() = parts.uri.clone();
    *head.version_mut() = parts.version;
    *head.headers_mut() = parts.headers.clone();
    head
}

/// A request the upstream refused unprocessed, not sent again: it had a body, which the
/// proxy streams rather than keeps, or it was refused on every try.
#[derive(Debug, thiserror::Error)]
#[error("upstream refused the request unprocessed ({0}); it is safe to retry")]
pub struct Refused(#[source] pub(crate) h2::Error);
