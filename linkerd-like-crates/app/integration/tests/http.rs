//! HTTP through the real proxy: HTTP/1.1, HTTP/2, gRPC-style trailers, upgrades, CONNECT.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use conduit_app_integration::*;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn http1_explicit_mode_and_keepalive_pooling() {
    let (upstream, seen) = hello_server("hello").await;
    let proxy = TestProxy::spawn(config(&[])).await;
    let mut client = http1_client(proxy.outbound).await;
    for i in 0..50 {
        let req = http::Request::get(format!("http://{upstream}/n/{i}"))
            .body(Full::default())
            .unwrap();
        let rsp = bounded(client.send_request(req)).await.unwrap();
        assert_eq!(rsp.status(), 200);
        assert_eq!(body_string(rsp).await, "hello");
    }
    assert_eq!(seen.requests(), 50);
    assert_eq!(
        seen.connections(),
        1,
        "keep-alive must reuse one upstream connection"
    );
    let m = proxy.metrics().await;
    let authority = format!("authority=\"{upstream}\"");
    assert_eq!(
        metric_value(&m, "request_total", &["direction=\"outbound\"", &authority]),
        Some(50.0),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "response_total",
            &[
                &authority,
                "status_code=\"200\"",
                "classification=\"success\""
            ]
        ),
        Some(50.0)
    );
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn http1_host_header_routes_origin_form_requests() {
    let (upstream, _) = hello_server("by host").await;
    let proxy = TestProxy::spawn(config(&[])).await;
    let rsp = raw_exchange(
        proxy.outbound,
        format!("GET /x HTTP/1.1\r\nHost: {upstream}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(rsp.starts_with("HTTP/1.1 200 OK"), "{rsp}");
    assert!(rsp.ends_with("by host"), "{rsp}");
}

#[tokio::test]
async fn inbound_forwards_to_the_application_and_bodies_stream() {
    // The upstream echoes the request body back.
    let (app, _) = http_server(|req: http::Request<hyper::body::Incoming>| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        http::Response::new(Full::new(body))
    })
    .await;
    let fwd = app.to_string();
    let proxy = TestProxy::spawn(config(&[("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", &fwd)])).await;
    let mut client = http1_client(proxy.inbound).await;
    let big = Bytes::from(vec![b'z'; 3 * 1024 * 1024]);
    let req = http::Request::post("/echo")
        .header("host", "app")
        .body(Full::new(big.clone()))
        .unwrap();
    let rsp = bounded(client.send_request(req)).await.unwrap();
    assert_eq!(rsp.status(), 200);
    let got = bounded(rsp.into_body().collect()).await.unwrap().to_bytes();
    assert_eq!(got.len(), big.len());
    let m = proxy.metrics().await;
    assert_eq!(
        metric_value(&m, "request_total", &["direction=\"inbound\""]),
        Some(1.0),
        "{m}"
    );
    let read = metric_value(
        &m,
        "tcp_read_bytes_total",
        &["direction=\"inbound\"", "peer=\"src\""],
    )
    .unwrap();
    assert!(read >= big.len() as f64, "{read}");
}

#[tokio::test]
async fn http2_multiplexes_many_streams_on_one_upstream_connection() {
    let (app, seen) = http_server(|req: http::Request<hyper::body::Incoming>| async move {
        assert_eq!(req.version(), http::Version::HTTP_2);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        http::Response::new(Full::from(req.uri().path().to_string()))
    })
    .await;
    let fwd = app.to_string();
    let proxy = TestProxy::spawn(config(&[("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", &fwd)])).await;
    let client = h2_client(proxy.inbound).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            let req = http::Request::get(format!("http://app/{i}"))
                .body(Full::default())
                .unwrap();
            let rsp = client.send_request(req).await.unwrap();
            assert_eq!(rsp.version(), http::Version::HTTP_2);
            body_string(rsp).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(bounded(t).await.unwrap(), format!("/{i}"));
    }
    assert_eq!(seen.requests(), 50);
    assert_eq!(
        seen.connections(),
        1,
        "HTTP/2 must multiplex on one connection"
    );
}

#[tokio::test]
async fn websocket_upgrade_is_carried_through() {
    let app = websocket_echo_server().await;
    let fwd = app.to_string();
    let proxy = TestProxy::spawn(config(&[("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", &fwd)])).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.inbound).await.unwrap();
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    for msg in [&b"ping"[..], b"a longer frame of bytes"] {
        stream.write_all(msg).await.unwrap();
        let mut buf = vec![0; msg.len()];
        bounded(stream.read_exact(&mut buf)).await.unwrap();
        assert_eq!(buf, msg);
    }
}

#[tokio::test]
async fn connect_tunnels_in_explicit_mode_with_half_close() {
    let echo = tcp_echo_server().await;
    let proxy = TestProxy::spawn(config(&[])).await;
    let out = connect_and_echo(proxy.outbound, &echo.to_string(), "through the tunnel").await;
    assert_eq!(out, "through the tunnel");
}

/// Sends `CONNECT target` to `proxy`, expects 200, then sends `payload`, half-closes, and
/// returns everything read back until the tunnel closes.
async fn connect_and_echo(proxy: std::net::SocketAddr, target: &str, payload: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    stream
        .write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream.write_all(payload.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut out = String::new();
    bounded(stream.read_to_string(&mut out)).await.unwrap();
    out
}

/// Reads a response head byte by byte, so nothing after it is consumed.
#[tokio::test]
async fn upstream_connections_are_pooled_across_downstream_connections() {
    let (app, seen) = hello_server("pooled").await;
    let fwd = app.to_string();
    let proxy = TestProxy::spawn(config(&[("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", &fwd)])).await;
    for _ in 0..3 {
        let rsp = get(proxy.inbound, "/").await;
        assert_eq!(body_string(rsp).await, "pooled");
        // Let the downstream connection close and hand its upstream connection back.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen.connections(),
        1,
        "one upstream connection serves them all"
    );
}

#[tokio::test]
async fn upstreams_that_close_after_each_response_still_serve_every_request() {
    let (app, seen) = http_server(|_req| async {
        http::Response::builder()
            .header("connection", "close")
            .body(Full::from("bye"))
            .unwrap()
    })
    .await;
    let fwd = app.to_string();
    let proxy = TestProxy::spawn(config(&[("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", &fwd)])).await;
    let mut client = http1_client(proxy.inbound).await;
    for _ in 0..4 {
        let req = http::Request::get("/")
            .header("host", "app")
            .body(Full::default())
            .unwrap();
        let rsp = bounded(client.send_request(req)).await.unwrap();
        assert_eq!(rsp.status(), 200);
        assert_eq!(body_string(rsp).await, "bye");
    }
    assert_eq!(seen.connections(), 4);
}

#[tokio::test]
async fn connect_is_carried_through_to_an_upstream_that_tunnels() {
    // The application behind the proxy is itself an HTTP proxy answering CONNECT.
    let (app, _) = http_server(|mut req: http::Request<hyper::body::Incoming>| async move {
        assert_eq!(req.method(), http::Method::CONNECT);
        assert_eq!(req.uri(), "db.internal:5432");
        echo_once_upgraded(&mut req);
        http::Response::new(Full::default())
    })
    .await;
    let fwd = app.to_string();
    let proxy = TestProxy::spawn(config(&[("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", &fwd)])).await;
    let out = connect_and_echo(proxy.inbound, "db.internal:5432", "tunnelled bytes").await;
    assert_eq!(out, "tunnelled bytes");
}

#[tokio::test]
async fn http2_connect_is_carried_through_to_an_upstream_that_tunnels() {
    let (app, _) = http_server(|mut req: http::Request<hyper::body::Incoming>| async move {
        assert_eq!(req.method(), http::Method::CONNECT);
        assert_eq!(req.version(), http::Version::HTTP_2);
        echo_once_upgraded(&mut req);
        http::Response::new(Full::default())
    })
    .await;
    let fwd = app.to_string();
    let proxy = TestProxy::spawn(config(&[("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", &fwd)])).await;
    let mut client = h2_client(proxy.inbound).await;
    let req = http::Request::connect("db.internal:5432")
        .body(Full::default())
        .unwrap();
    let rsp = bounded(client.send_request(req)).await.unwrap();
    assert_eq!(rsp.status(), 200, "{:?}", rsp.headers());
    let tunnel = bounded(hyper::upgrade::on(rsp)).await.unwrap();
    let (mut r, mut w) = tokio::io::split(hyper_util::rt::TokioIo::new(tunnel));
    // Past the proxy's 1 MiB stream window, so both directions wait on window updates.
    let payload = vec![b'c'; 3 * 1024 * 1024];
    let write = async {
        w.write_all(&payload).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let mut echoed = Vec::new();
    let ((), read) = bounded(async { tokio::join!(write, r.read_to_end(&mut echoed)) }).await;
    assert_eq!(read.unwrap(), payload.len());
    assert!(echoed == payload, "the tunnel changed the bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_are_served_on_a_multi_worker_runtime() {
    // The server spawns each stream here, rather than polling it in the connection's task.
    let (app, _) = http_server(|req: http::Request<hyper::body::Incoming>| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        http::Response::new(Full::from(body))
    })
    .await;
    let fwd = app.to_string();
    let proxy = TestProxy::spawn(config(&[("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", &fwd)])).await;
    let client = h2_client(proxy.inbound).await;
    let calls: Vec<_> = (0..40)
        .map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let req = http::Request::post("http://app/")
                    .body(Full::from(format!("stream {i}")))
                    .unwrap();
                body_string(client.send_request(req).await.unwrap()).await
            })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(bounded(call).await.unwrap(), format!("stream {i}"));
    }
}

/// A request body of `chunks` chunks of 64 KiB and then trailers, sent as it is polled.
struct ChunksThenTrailers {
    chunks: usize,
}

impl hyper::body::Body for ChunksThenTrailers {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let frame = match self.chunks {
            0 => {
                let mut trailers = http::HeaderMap::new();
                trailers.insert("x-checksum", http::HeaderValue::from_static("zz"));
                self.chunks = usize::MAX;
                Some(Ok(hyper::body::Frame::trailers(trailers)))
            }
            usize::MAX => None,
            _ => {
                self.chunks -= 1;
                Some(Ok(hyper::body::Frame::data(Bytes::from(vec![
                    b'z';
                    64 * 1024
                ]))))
            }
        };
        std::task::Poll::Ready(frame)
    }
}

#[tokio::test]
async fn http2_request_bodies_and_trailers_stream_past_the_flow_control_windows() {
    // The upstream reads the whole body and answers with its length and the trailer it got.
    let (app, _) = http_server(|req: http::Request<hyper::body::Incoming>| async move {
        let collected = req.into_body().collect().await.unwrap();
        let trailer = collected
            .trailers()
            .and_then(|t| t.get("x-checksum"))
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let len = collected.to_bytes().len();
        http::Response::builder()
            .header("x-trailer", trailer)
            .body(Full::from(vec![b'y'; len]))
            .unwrap()
    })
    .await;
    let fwd = app.to_string();
    let proxy = TestProxy::spawn(config(&[("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", &fwd)])).await;
    let stream = bounded(tokio::net::TcpStream::connect(proxy.inbound))
        .await
        .unwrap();
    let (mut client, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    // 160 chunks of 64 KiB: 10 MiB, past both the 2 MiB stream and 5 MiB connection windows
    // of the proxy's upstream connection, so the body must wait for window updates.
    for _ in 0..2 {
        let req = http::Request::post("http://app/upload")
            .body(ChunksThenTrailers { chunks: 160 })
            .unwrap();
        let rsp = bounded(client.send_request(req)).await.unwrap();
        assert_eq!(rsp.status(), 200);
        assert_eq!(rsp.headers()["x-trailer"], "zz");
        let got = bounded(rsp.into_body().collect()).await.unwrap().to_bytes();
        assert_eq!(got.len(), 160 * 64 * 1024);
        assert!(got.iter().all(|b| *b == b'y'));
    }
}

#[tokio::test]
async fn http2_upstreams_that_go_away_are_replaced_without_a_failed_request() {
    // Each upstream connection serves one request, then goes away (GOAWAY) and closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let accepted = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let (served_tx, mut served_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
                let svc = hyper::service::service_fn(move |_req| {
                    let _ = served_tx.send(());
                    async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::<Bytes>::from(
                            "ok",
                        )))
                    }
                });
                let conn =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => return,
                    _ = served_rx.recv() => conn.as_mut().graceful_shutdown(),
                }
                let _ = conn.await;
            });
        }
    });
    let fwd = app.to_string();
    let proxy = TestProxy::spawn(config(&[("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", &fwd)])).await;
    let mut client = h2_client(proxy.inbound).await;
    for i in 0..5 {
        let req = http::Request::get(format!("http://app/{i}"))
            .body(Full::default())
            .unwrap();
        let rsp = bounded(client.send_request(req)).await.unwrap();
        assert_eq!(rsp.status(), 200, "request {i}: {:?}", rsp.headers());
        assert_eq!(body_string(rsp).await, "ok");
        // Let the upstream's GOAWAY and close reach the proxy before the next request.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 5);
}
