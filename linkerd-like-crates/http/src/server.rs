//! Serving a detected HTTP connection.
//!
//! Before hyper sees an HTTP/1 connection, the first request's head is read and checked with
//! `httparse` within the header-read timeout and the header size limit, so that a malformed
//! request, an oversized head or a slowloris client gets a response carrying the
//! `conduit-proxy-error` header (400, 431, 408) rather than hyper's bare one. For later
//! requests on the connection hyper's own limits are set to [`HYPER_LIMIT_FACTOR`] times ours,
//! and [`check_head`] enforces ours on each parsed request, so those get the header too; only
//! a head beyond hyper's wider limit, or one hyper cannot parse, is answered by hyper alone.
//!
//! After the first request, the header-read timeout is kept by one idle timer per connection
//! rather than hyper's per-request timer (see the `idle` module): a connection left idle, or
//! dribbling its next head, for that long after its last response is closed.

use crate::errors::PROXY_ERROR_HEADER;
use crate::idle::{Activity, Tracked};
use crate::{Http, ProxyBody};
use bytes::{Bytes, BytesMut};
use conduit_error::Error;
use conduit_io::{Batched, Coalesced, PrefixedIo};
use conduit_stack::drain;
use futures::future::{Either, TryFutureExt};
use http::StatusCode;
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Limits on what a server accepts.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Time allowed to receive a connection's first request head, and for which a
    /// keep-alive connection may sit idle (or dribble its next head) after a response.
    pub header_read_timeout: Duration,
    /// Largest request head accepted, in bytes.
    pub max_header_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
        }
    }
}

/// Hyper's HTTP/1 parser allows this many headers by default; the preflight agrees.
const MAX_HEADERS: usize = 100;

/// How much wider hyper's own head limits are than ours, so that ours speak first.
pub const HYPER_LIMIT_FACTOR: usize = 4;

/// What [`serve`] needs of a service: what hyper and `h2` need, spelled once.
///
/// Requests come with a [`ProxyBody`] whichever protocol took them: hyper's body for
/// HTTP/1, an `h2` stream for HTTP/2.
pub trait HttpService<B>:
    tower_service::Service<
        http::Request<ProxyBody>,
        Response = http::Response<B>,
        Future: Send + 'static,
        Error: Into<Error>,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B> HttpService<B> for S where
    S: tower_service::Service<
            http::Request<ProxyBody>,
            Response = http::Response<B>,
            Future: Send + 'static,
            Error: Into<Error>,
        > + Clone
        + Send
        + 'static
{
}

/// What [`serve`] needs of a response body.
pub trait ResponseBody: Body<Data = Bytes, Error: Into<Error>> + Send + 'static {}

impl<B> ResponseBody for B where B: Body<Data = Bytes, Error: Into<Error>> + Send + 'static {}

/// Calls `svc` with `req` once it is ready: how a request reaches the service, whichever
/// protocol took it.
///
/// The proxy's services are ready at once. Asked first with a waker that does nothing, a
/// ready service is called here, and the request's future is the service's own alone, which
/// each request moves and allocates: an `async` wrapper would hold the service and the request
/// beside it. A service not ready is asked again, with the task's waker, by the future
/// returned, so that its readiness wakes the task as tower's contract wants.
pub(crate) fn call<S, B>(
    mut svc: S,
    req: http::Request<ProxyBody>,
) -> impl Future<Output = Result<http::Response<B>, Error>> + Send + 'static
where
    S: HttpService<B>,
    B: 'static,
{
    type Later<B> = Pin<Box<dyn Future<Output = Result<http::Response<B>, Error>> + Send>>;
    let later: Later<B> = match svc.poll_ready(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(())) => return Either::Left(svc.call(req).map_err(Into::into)),
        Poll::Ready(Err(e)) => {
            let error = e.into();
            Box::pin(async move { Err(error) })
        }
        Poll::Pending => Box::pin(async move {
            std::future::poll_fn(|cx| svc.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            svc.call(req).await.map_err(Into::into)
        }),
    };
    Either::Right(later)
}

/// Serves `io`, already detected as `http`, with `svc`, until the connection closes or, after
/// `drain` is signaled, until in-flight requests finish.
///
/// Each protocol's connection lives in its own heap allocation, sized for that protocol: a
/// future holding both would carry HTTP/2's connection state on every HTTP/1 connection, and
/// the caller's task would be as large as the larger of the two.
pub async fn serve<I, S, B>(
    io: PrefixedIo<I>,
    http: Http,
    svc: S,
    config: &ServerConfig,
    drain: drain::Watch,
) -> Result<(), Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<B>,
    B: ResponseBody,
{
    match http {
        Http::Http1 => Box::pin(serve_h1(io, svc, config, drain)).await,
        Http::H2 => Box::pin(serve_h2(io, svc, config, drain)).await,
    }
}

async fn serve_h1<I, S, B>(
    io: PrefixedIo<I>,
    svc: S,
    config: &ServerConfig,
    mut drain: drain::Watch,
) -> Result<(), Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<B>,
    B: ResponseBody,
{
    let Some(io) = preflight(io, config).await? else {
        return Ok(());
    };
    // The idle timer below stands in for hyper's header-read timeout (see `idle`).
    let activity = Activity::new();
    let svc = Tracked::new(svc, activity.clone());
    let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        call(svc.clone(), req.map(ProxyBody::Incoming))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size((HYPER_LIMIT_FACTOR * config.max_header_bytes).max(8192))
        .max_headers(HYPER_LIMIT_FACTOR * MAX_HEADERS);
    let conn = builder
        .serve_connection(TokioIo::new(Coalesced::new(io)), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let timeout = config.header_read_timeout;
    let idle = tokio::time::sleep(timeout);
    tokio::pin!(idle);
    let mut draining = false;
    loop {
        tokio::select! {
            biased;
            res = conn.as_mut() => return res.map_err(Into::into),
            _ = drain.signaled(), if !draining => {
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
            () = idle.as_mut() => {
                let now = tokio::time::Instant::now();
                match activity.idle_deadline(timeout) {
                    Some(deadline) if deadline <= now => {
                        tracing::debug!(?timeout, "closing an idle HTTP/1 connection");
                        return Ok(());
                    }
                    Some(deadline) => idle.as_mut().reset(deadline),
                    None => idle.as_mut().reset(now + timeout),
                }
            }
        }
    }
}

async fn serve_h2<I, S, B>(
    io: PrefixedIo<I>,
    svc: S,
    config: &ServerConfig,
    drain: drain::Watch,
) -> Result<(), Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<B>,
    B: ResponseBody,
{
    crate::h2_server::serve(Batched::new(io), svc, config, drain).await
}

/// Checks a parsed request against the head limits: at most `max_bytes` for the request line
/// and headers as sent (names, values and separators), and at most 100 headers.
pub fn check_head<B>(req: &http::Request<B>, max_bytes: usize) -> Result<(), crate::ErrorStatus> {
    let headers = req.headers();
    let size = req.method().as_str().len()
        + req.uri().path_and_query().map_or(1, |p| p.as_str().len())
        + headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if size > max_bytes || headers.len() > MAX_HEADERS {
        let (status, reason) = too_large();
        return Err(crate::ErrorStatus::new(status, reason));
    }
    Ok(())
}

/// Reads the first request head; answers and returns `None` if it is not acceptable.
async fn preflight<I>(
    io: PrefixedIo<I>,
    config: &ServerConfig,
) -> Result<Option<PrefixedIo<I>>, Error>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let (prefix, mut io) = io.into_parts();
    let mut buf = BytesMut::from(&prefix[..]);
    let deadline = tokio::time::Instant::now() + config.header_read_timeout;
    let refusal = loop {
        match check_raw_head(&buf, config.max_header_bytes) {
            Ok(true) => return Ok(Some(PrefixedIo::new(buf.freeze(), io))),
            Ok(false) => {}
            Err(refusal) => break refusal,
        }
        let want = config.max_header_bytes + 1 - buf.len().min(config.max_header_bytes);
        buf.reserve(want.min(8192));
        let mut limited = (&mut io).take(want as u64);
        match tokio::time::timeout_at(deadline, limited.read_buf(&mut buf)).await {
            Err(_) => {
                break (
                    StatusCode::REQUEST_TIMEOUT,
                    "request headers not received in time",
                )
            }
            // The client went away before finishing its request: nobody to answer.
            Ok(Ok(0)) => return Ok(None),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.into()),
        }
    };
    let (status, reason) = refusal;
    tracing::debug!(%status, reason, "refusing request");
    let head = format!(
        "HTTP/1.1 {} {}\r\n{PROXY_ERROR_HEADER}: {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
    );
    io.write_all(head.as_bytes()).await?;
    io.shutdown().await?;
    Ok(None)
}

/// `Ok(true)` when `buf` holds a complete, valid head; `Ok(false)` when more is needed.
fn check_raw_head(buf: &[u8], max: usize) -> Result<bool, (StatusCode, &'static str)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= max => Ok(true),
        Ok(httparse::Status::Complete(_)) => Err(too_large()),
        Ok(httparse::Status::Partial) if buf.len() > max => Err(too_large()),
        Ok(httparse::Status::Partial) => Ok(false),
        Err(httparse::Error::TooManyHeaders) => Err(too_large()),
        Err(_) => Err((StatusCode::BAD_REQUEST, "malformed HTTP request")),
    }
}

fn too_large() -> (StatusCode, &'static str) {
    (
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "request headers too large",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tower_test::mock;

    type Mock = mock::Mock<http::Request<ProxyBody>, http::Response<&'static str>>;

    #[tokio::test(start_paused = true)]
    async fn a_service_not_ready_gets_the_request_once_it_is() {
        let (svc, mut handle): (Mock, _) = mock::pair();
        handle.allow(0);
        let rsp = tokio::spawn(call(svc, http::Request::new(ProxyBody::empty())));
        let early = tokio::time::timeout(Duration::from_secs(1), handle.next_request()).await;
        assert!(
            early.is_err(),
            "a request reached a service that was not ready"
        );
        handle.allow(1);
        let (_req, send) = tokio::time::timeout(Duration::from_secs(1), handle.next_request())
            .await
            .expect("the service's readiness wakes the call")
            .expect("a request");
        send.send_response(http::Response::new("ok"));
        let rsp = rsp.await.unwrap().unwrap();
        assert_eq!(*rsp.body(), "ok");
    }

    #[tokio::test]
    async fn a_service_failing_readiness_fails_the_call() {
        let (svc, mut handle): (Mock, _) = mock::pair();
        handle.send_error("backend gone");
        let err = call(svc, http::Request::new(ProxyBody::empty()))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("backend gone"), "{err}");
    }

    #[test]
    fn parsed_heads_are_held_to_the_same_limits() {
        let small = http::Request::get("/a").header("x", "y").body(()).unwrap();
        assert!(check_head(&small, 1024).is_ok());
        let big = http::Request::get("/a")
            .header("x", "y".repeat(2000))
            .body(())
            .unwrap();
        let err = check_head(&big, 1024).unwrap_err();
        assert_eq!(err.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let mut many = http::Request::get("/").body(()).unwrap();
        for i in 0..101 {
            many.headers_mut().insert(
                http::HeaderName::from_bytes(format!("h{i}").as_bytes()).unwrap(),
                http::HeaderValue::from_static("v"),
            );
        }
        assert!(check_head(&many, 1 << 20).is_err());
    }

    #[test]
    fn heads_are_checked() {
        assert_eq!(
            check_raw_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1024),
            Ok(true)
        );
        assert_eq!(
            check_raw_head(b"GET / HTTP/1.1\r\nHost: a\r\n", 1024),
            Ok(false)
        );
        assert_eq!(
            check_raw_head(b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n", 1024)
                .unwrap_err()
                .0,
            StatusCode::BAD_REQUEST
        );
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(2000, b'a');
        assert_eq!(
            check_raw_head(&big, 1024).unwrap_err().0,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..101 {
            many.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            check_raw_head(&many, 1 << 20).unwrap_err().0,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }

    #[tokio::test(start_paused = true)]
    async fn slow_heads_get_408() {
        let (mut client, server) = tokio::io::duplex(4096);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let config = ServerConfig {
            header_read_timeout: Duration::from_secs(3),
            max_header_bytes: 1024,
        };
        let res = preflight(PrefixedIo::new(Bytes::new(), server), &config)
            .await
            .unwrap();
        assert!(res.is_none());
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
        assert!(out.contains("conduit-proxy-error: "), "{out}");
    }
}
