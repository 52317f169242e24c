//! Serving HTTP/2 on the `h2` crate's server directly.
//!
//! hyper's HTTP/2 server spawns a task for every stream: the connection's task accepts the
//! stream and schedules the new task, which calls the service; when the response is ready
//! the stream's task queues it and wakes the connection's task again to write it. Here, on a
//! runtime with one worker (the proxy's default), a connection's streams are futures polled
//! by the connection's own task: an accepted request is called in the same poll that read
//! it, and responses queued by the streams are written by the next turn of the same loop,
//! several in one write when several are ready. On a runtime with more workers, each stream
//! is spawned, as hyper does, so that one busy connection's streams spread over the workers.
//!
//! What hyper did around `h2` is kept: the same window sizes, frame size, send buffer and
//! stream limits; connection-specific headers stripped from responses; `content-length`
//! set from a body's exact size; a client's RST_STREAM cancels its request (the service's
//! future is dropped); a failed service resets the stream; `CONNECT` answered with 2xx
//! turns the stream into a tunnel (see `upgrade`). A response marked
//! [`RefusedStream`] (the upstream refused the request unprocessed) resets the stream with
//! REFUSED_STREAM, so that the client may send it again.

use crate::errors::RefusedStream;
use crate::h2_body::{pipe, RecvBody, Tunnel};
use crate::headers::strip_hop_by_hop;
use crate::server::{call, HttpService, ResponseBody, ServerConfig};
use crate::upgrade::H2Tunnel;
use crate::ProxyBody;
use bytes::Bytes;
use conduit_error::Error;
use conduit_stack::drain;
use futures::future::{Either, FutureExt};
use futures::stream::{FuturesUnordered, StreamExt};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::{Method, Request, Response};
use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

// hyper's server defaults, so that replacing it changes no behaviour on the wire.
const CONNECTION_WINDOW: u32 = 1024 * 1024;
const STREAM_WINDOW: u32 = 1024 * 1024;
const MAX_FRAME: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 400 * 1024;
const MAX_CONCURRENT_STREAMS: u32 = 200;
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// Serves one HTTP/2 connection with `svc` until it closes, or, after `drain` is signaled,
/// until the streams in flight have finished (GOAWAY tells the client to open no more).
pub(crate) async fn serve<I, S, B>(
    io: I,
    svc: S,
    config: &ServerConfig,
    mut drain: drain::Watch,
) -> Result<(), Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<B>,
    B: ResponseBody,
{
    let mut conn = h2::server::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        .handshake::<_, Bytes>(io)
        .await?;
    let inline = tokio::runtime::Handle::current().metrics().num_workers() == 1;
    let mut streams = FuturesUnordered::new();
    // Made once: a fresh watch future each turn would register and unregister a waiter.
    let mut signaled = pin!(drain.signaled());
    let mut draining = false;
    loop {
        tokio::select! {
            // Streams first, so the connection's poll below sends what they queued this turn.
            biased;
            Some(()) = streams.next(), if !streams.is_empty() => {}
            accepted = conn.accept() => match accepted {
                Some(Ok((req, respond))) => {
                    let stream = respond_to(svc.clone(), req, respond);
                    if inline {
                        streams.push(stream);
                    } else {
                        tokio::spawn(stream);
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                // Closed, or drained with every stream done: nothing more can be sent.
                None => return Ok(()),
            },
            () = &mut signaled, if !draining => {
                conn.graceful_shutdown();
                draining = true;
            }
        }
    }
}

/// Answers one stream: calls the service, sends the response head, then the body.
///
/// Two futures one after the other, the call and then the body, so that a stream's future
/// (allocated and moved whole for every request) is as large as the larger of the two rather
/// than both side by side, as an `async` block holding the call across the body would be.
fn respond_to<S, B>(
    svc: S,
    req: Request<RecvStream>,
    respond: SendResponse<Bytes>,
) -> impl Future<Output = ()> + Send + 'static
where
    S: HttpService<B>,
    B: ResponseBody,
{
    let (mut parts, recv) = req.into_parts();
    let mut tunnel = None;
    let body = if parts.method == Method::CONNECT {
        let (pending, fill) = H2Tunnel::pair();
        parts.extensions.insert(pending);
        tunnel = Some((fill, recv));
        ProxyBody::empty()
    } else {
        ProxyBody::Recv(RecvBody::request(recv, &parts.headers))
    };
    let call = call(svc, Request::from_parts(parts, body));
    Called {
        call,
        respond: Some(respond),
    }
    .then(
        move |(rsp, respond)| match send_head(respond, rsp, tunnel) {
            Some((body, send)) => {
                Either::Left(pipe(body, send, Reason::INTERNAL_ERROR).map(|sent| {
                    if let Err(error) = sent {
                        tracing::debug!(%error, "HTTP/2 response body not sent whole");
                    }
                }))
            }
            None => Either::Right(std::future::ready(())),
        },
    )
}

/// A stream's call to the service, given up (and so cancelled upstream) when the client
/// resets the stream first. Yields the response, if any, with the stream's sender.
#[pin_project::pin_project]
struct Called<F> {
    #[pin]
    call: F,
    respond: Option<SendResponse<Bytes>>,
}

impl<F, B> Future for Called<F>
where
    F: Future<Output = Result<Response<B>, Error>>,
{
    type Output = (Option<Result<Response<B>, Error>>, SendResponse<Bytes>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // Only a caller polling it after it finished finds no sender; it waits forever
        // rather than panic (`then` never does).
        let Some(respond) = this.respond else {
            return Poll::Pending;
        };
        let rsp = match this.call.poll(cx) {
            Poll::Ready(rsp) => Some(rsp),
            Poll::Pending => {
                // The client reset the stream (or the connection failed): dropping the
                // call cancels the request upstream.
                let _reset = std::task::ready!(respond.poll_reset(cx));
                None
            }
        };
        match this.respond.take() {
            Some(respond) => Poll::Ready((rsp, respond)),
            None => Poll::Pending,
        }
    }
}

/// Sends a stream's response head (or resets the stream), and gives back the body still to
/// send with the stream to send it on. A 2xx answer to `CONNECT` turns the stream into the
/// request's tunnel instead.
fn send_head<B>(
    mut respond: SendResponse<Bytes>,
    rsp: Option<Result<Response<B>, Error>>,
    tunnel: Option<(oneshot::Sender<Tunnel>, RecvStream)>,
) -> Option<(B, SendStream<Bytes>)>
where
    B: ResponseBody,
{
    let rsp = match rsp {
        None => return None,
        Some(Ok(rsp)) => rsp,
        Some(Err(error)) => {
            tracing::debug!(%error, "HTTP/2 service failed");
            respond.send_reset(Reason::INTERNAL_ERROR);
            return None;
        }
    };
    let (mut head, body) = rsp.into_parts();
    if head.extensions.get::<RefusedStream>().is_some() {
        respond.send_reset(Reason::REFUSED_STREAM);
        return None;
    }
    strip_hop_by_hop(&mut head.headers, false);
    if let Some((fill, recv)) = tunnel {
        if head.status.is_success() {
            head.headers.remove(http::header::CONTENT_LENGTH);
            match respond.send_response(Response::from_parts(head, ()), false) {
                Ok(send) => {
                    let _ = fill.send(Tunnel::new(send, recv));
                }
                Err(error) => tracing::debug!(%error, "CONNECT response not sent"),
            }
            return None;
        }
    }
    let eos = body.is_end_stream();
    if !eos {
        if let Some(len) = body.size_hint().exact() {
            head.headers
                .entry(http::header::CONTENT_LENGTH)
                .or_insert_with(|| http::HeaderValue::from(len));
        }
    }
    match respond.send_response(Response::from_parts(head, ()), eos) {
        Ok(send) if !eos => Some((body, send)),
        Ok(_) => None,
        Err(error) => {
            tracing::debug!(%error, "HTTP/2 response not sent");
            respond.send_reset(Reason::INTERNAL_ERROR);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use std::convert::Infallible;
    use std::future::poll_fn;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::{mpsc, Notify};

    type Client = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

    async fn bounded<F: Future>(f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .expect("timed out")
    }

    struct Connected {
        client: Client,
        server: tokio::task::JoinHandle<Result<(), Error>>,
        /// Dropping it would start a drain.
        signal: drain::Signal,
    }

    /// Serves one connection with `svc`: the client's end of it, the server's task, and the
    /// drain signal.
    async fn serving<S, B>(
        svc: S,
    ) -> (
        TcpStream,
        tokio::task::JoinHandle<Result<(), Error>>,
        drain::Signal,
    )
    where
        S: HttpService<B>,
        B: ResponseBody,
    {
        let (signal, drain) = drain::channel();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (io, _) = listener.accept().await?;
            serve(io, svc, &ServerConfig::default(), drain).await
        });
        (TcpStream::connect(addr).await.unwrap(), server, signal)
    }

    /// Serves one connection with `svc`, with a client on it.
    async fn connected<S, B>(svc: S) -> Connected
    where
        S: HttpService<B>,
        B: ResponseBody,
    {
        let (io, server, signal) = serving(svc).await;
        let (client, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                .await
                .unwrap();
        tokio::spawn(conn);
        Connected {
            client,
            server,
            signal,
        }
    }

    fn get(path: &str) -> Request<Full<Bytes>> {
        Request::get(format!("http://test{path}"))
            .body(Full::default())
            .unwrap()
    }

    /// Echoes the request body, with its trailers.
    fn echo() -> impl HttpService<ProxyBody> {
        tower::service_fn(|req: Request<ProxyBody>| async move {
            Ok::<_, Infallible>(Response::new(req.into_body()))
        })
    }

    async fn streams_are_answered_concurrently() {
        let Connected {
            client,
            signal: _signal,
            ..
        } = connected(echo()).await;
        let calls = (0..50).map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let req = Request::post("http://test/")
                    .body(Full::from(format!("body {i}")))
                    .unwrap();
                let rsp = client.send_request(req).await.unwrap();
                assert_eq!(
                    rsp.headers()["content-length"],
                    format!("body {i}").len().to_string()
                );
                rsp.into_body().collect().await.unwrap().to_bytes()
            })
        });
        for (i, call) in calls.enumerate() {
            assert_eq!(bounded(call).await.unwrap(), format!("body {i}"));
        }
    }

    #[tokio::test]
    async fn streams_are_answered_concurrently_on_one_worker() {
        streams_are_answered_concurrently().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streams_are_answered_concurrently_on_many_workers() {
        streams_are_answered_concurrently().await;
    }

    #[tokio::test]
    async fn a_client_reset_cancels_the_request() {
        struct Guard(mpsc::UnboundedSender<&'static str>);
        impl Drop for Guard {
            fn drop(&mut self) {
                let _ = self.0.send("dropped");
            }
        }
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let svc = tower::service_fn(move |_req: Request<ProxyBody>| {
            let guard = Guard(events_tx.clone());
            let _ = events_tx.send("called");
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok::<_, Infallible>(Response::new(ProxyBody::empty()))
            }
        });
        let Connected {
            mut client,
            signal: _signal,
            ..
        } = connected(svc).await;
        let call = tokio::spawn(async move { client.send_request(get("/")).await });
        assert_eq!(bounded(events.recv()).await, Some("called"));
        // Dropping hyper's response future resets the stream.
        call.abort();
        assert_eq!(bounded(events.recv()).await, Some("dropped"));
    }

    #[tokio::test]
    async fn a_drain_lets_streams_in_flight_finish_then_closes() {
        let release = Arc::new(Notify::new());
        let (called_tx, mut called) = mpsc::unbounded_channel();
        let gate = release.clone();
        let svc = tower::service_fn(move |_req: Request<ProxyBody>| {
            let gate = gate.clone();
            let _ = called_tx.send(());
            async move {
                gate.notified().await;
                Ok::<_, Infallible>(Response::new(ProxyBody::full("finished")))
            }
        });
        let Connected {
            mut client,
            server,
            signal,
        } = connected(svc).await;
        let mut c = client.clone();
        let in_flight = tokio::spawn(async move { c.send_request(get("/slow")).await });
        bounded(called.recv()).await.unwrap();
        let drained = tokio::spawn(signal.drain());
        // Once the GOAWAY has reached the client, a new stream is not served.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let refused = bounded(client.send_request(get("/new"))).await;
        assert!(refused.is_err(), "{refused:?}");
        assert!(
            called.try_recv().is_err(),
            "a stream after the drain was served"
        );
        release.notify_one();
        let rsp = bounded(in_flight).await.unwrap().unwrap();
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "finished");
        bounded(server).await.unwrap().unwrap();
        bounded(drained).await.unwrap();
    }

    #[tokio::test]
    async fn connect_streams_become_tunnels() {
        let svc = tower::service_fn(|mut req: Request<ProxyBody>| async move {
            assert_eq!(req.method(), Method::CONNECT);
            let upgrade = crate::upgrade::on(&mut req);
            tokio::spawn(async move {
                let io = upgrade.upgraded().await.unwrap();
                let (mut r, mut w) = tokio::io::split(io);
                tokio::io::copy(&mut r, &mut w).await.unwrap();
                w.shutdown().await.unwrap();
            });
            Ok::<_, Infallible>(Response::new(ProxyBody::empty()))
        });
        let Connected {
            mut client,
            signal: _signal,
            ..
        } = connected(svc).await;
        let req = Request::connect("db.internal:5432")
            .body(Full::default())
            .unwrap();
        let rsp = bounded(client.send_request(req)).await.unwrap();
        assert_eq!(rsp.status(), 200);
        let io = bounded(hyper::upgrade::on(rsp)).await.unwrap();
        let mut io = TokioIo::new(io);
        // More than the 1 MiB stream window, so the tunnel waits on window updates both ways.
        let payload = vec![b't'; 3 * 1024 * 1024];
        let (mut r, mut w) = tokio::io::split(&mut io);
        let write = async {
            w.write_all(&payload).await.unwrap();
            w.shutdown().await.unwrap();
        };
        let mut echoed = Vec::new();
        let read = r.read_to_end(&mut echoed);
        let ((), n) = bounded(async { tokio::join!(write, read) }).await;
        assert_eq!(n.unwrap(), payload.len());
        assert!(echoed == payload);
    }

    /// One chunk, then a failure: the other side's stream reset with `fail`.
    struct CutShort {
        sent: bool,
        fail: Reason,
    }

    impl http_body::Body for CutShort {
        type Data = Bytes;
        type Error = Error;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
            if std::mem::replace(&mut self.sent, true) {
                return Poll::Ready(Some(Err(h2::Error::from(self.fail).into())));
            }
            Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(
                b"part",
            )))))
        }
    }

    #[tokio::test]
    async fn a_body_cut_short_resets_with_the_other_sides_reason_but_never_no_error() {
        let svc = tower::service_fn(|req: Request<ProxyBody>| async move {
            let fail = match req.uri().path() {
                "/calm" => Reason::ENHANCE_YOUR_CALM,
                // The other side's connection went away in good order mid-body.
                _ => Reason::NO_ERROR,
            };
            Ok::<_, Infallible>(Response::new(CutShort { sent: false, fail }))
        });
        let Connected {
            mut client,
            signal: _signal,
            ..
        } = connected(svc).await;
        let cases = [
            ("/calm", Reason::ENHANCE_YOUR_CALM),
            ("/gone", Reason::INTERNAL_ERROR),
        ];
        for (path, want) in cases {
            // The reset may overtake the head on the client's side.
            let err = match bounded(client.send_request(get(path))).await {
                Ok(rsp) => bounded(rsp.into_body().collect()).await.unwrap_err(),
                Err(e) => e,
            };
            let reset = std::error::Error::source(&err)
                .and_then(|e| e.downcast_ref::<h2::Error>())
                .and_then(h2::Error::reason);
            assert_eq!(reset, Some(want), "{path}: {err:?}");
        }
    }

    #[tokio::test]
    async fn a_failing_service_resets_only_its_stream() {
        let svc = tower::service_fn(|req: Request<ProxyBody>| async move {
            if req.uri().path() == "/fail" {
                return Err(Error::from("refused"));
            }
            Ok(Response::new(ProxyBody::full("ok")))
        });
        let Connected {
            mut client,
            signal: _signal,
            ..
        } = connected(svc).await;
        let err = bounded(client.send_request(get("/fail")))
            .await
            .unwrap_err();
        let reset = std::error::Error::source(&err)
            .and_then(|e| e.downcast_ref::<h2::Error>())
            .and_then(h2::Error::reason);
        assert_eq!(reset, Some(Reason::INTERNAL_ERROR), "{err:?}");
        let rsp = bounded(client.send_request(get("/fine"))).await.unwrap();
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "ok");
    }

    /// Answers at once, without reading the request body, as nginx's `return` does.
    fn answers_early() -> impl HttpService<ProxyBody> {
        tower::service_fn(|req: Request<ProxyBody>| async move {
            drop(req);
            Ok::<_, Infallible>(Response::new(ProxyBody::full("early")))
        })
    }

    /// Serves one connection with `svc`, with an `h2` client on it: these tests need the
    /// handle of the request's stream, which hyper's client keeps to itself.
    async fn h2_connected<S, B>(svc: S) -> (h2::client::SendRequest<Bytes>, drain::Signal)
    where
        S: HttpService<B>,
        B: ResponseBody,
    {
        let (io, _server, signal) = serving(svc).await;
        let (client, conn) = h2::client::handshake(io).await.unwrap();
        tokio::spawn(conn);
        (client, signal)
    }

    /// Opens a POST whose body is still to come, and reads the early answer whole.
    async fn post_answered_early(client: &h2::client::SendRequest<Bytes>) -> h2::SendStream<Bytes> {
        let mut client = bounded(client.clone().ready()).await.unwrap();
        let req = Request::post("http://test/").body(()).unwrap();
        let (rsp, stream) = client.send_request(req, false).unwrap();
        let mut body = bounded(rsp).await.unwrap().into_body();
        let mut got = Vec::new();
        while let Some(data) = bounded(body.data()).await {
            got.extend_from_slice(&data.unwrap());
        }
        assert_eq!(got, b"early");
        stream
    }

    /// The server's reset of the client's request stream, if one comes within `wait`.
    async fn reset_within(stream: &mut h2::SendStream<Bytes>, wait: Duration) -> Option<Reason> {
        let reset = poll_fn(|cx| stream.poll_reset(cx));
        tokio::time::timeout(wait, reset)
            .await
            .ok()
            .map(|r| r.unwrap())
    }

    #[tokio::test]
    async fn a_request_body_left_unread_is_drained_rather_than_reset() {
        let (client, _signal) = h2_connected(answers_early()).await;
        for _ in 0..3 {
            let mut stream = post_answered_early(&client).await;
            // The body's tail, still on its way when the answer came, is taken in: reset
            // instead, the tail would arrive for a stream the server may have forgotten.
            assert_eq!(
                reset_within(&mut stream, Duration::from_millis(300)).await,
                None
            );
            stream.send_data(Bytes::from_static(b"late"), true).unwrap();
            assert_eq!(
                reset_within(&mut stream, Duration::from_millis(300)).await,
                None
            );
        }
    }

    #[tokio::test]
    async fn a_request_body_never_finished_is_reset_when_the_drain_gives_up() {
        let (client, _signal) = h2_connected(answers_early()).await;
        let mut stream = post_answered_early(&client).await;
        stream
            .send_data(Bytes::from_static(b"more"), false)
            .unwrap();
        assert_eq!(
            reset_within(&mut stream, Duration::from_secs(10)).await,
            Some(Reason::NO_ERROR)
        );
    }

    #[tokio::test]
    async fn a_request_body_left_unread_is_drained_only_so_far() {
        let (client, _signal) = h2_connected(answers_early()).await;
        let mut stream = post_answered_early(&client).await;
        let answered = tokio::time::Instant::now();
        // Twice the drain's budget fits the stream's window, so it is all sent at once; the
        // server resets on reading past the budget, well before the drain's time is up.
        stream.reserve_capacity(2 * crate::h2_body::DRAIN_MAX_BYTES);
        stream
            .send_data(
                Bytes::from(vec![0; 2 * crate::h2_body::DRAIN_MAX_BYTES]),
                false,
            )
            .unwrap();
        assert_eq!(
            reset_within(&mut stream, Duration::from_secs(10)).await,
            Some(Reason::NO_ERROR)
        );
        assert!(
            answered.elapsed() < crate::h2_body::DRAIN_TIMEOUT,
            "reset after {:?}: the byte budget did not end the drain",
            answered.elapsed()
        );
    }
}
