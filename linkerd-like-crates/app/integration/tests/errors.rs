//! Errors a client can read: every failure is a status with a `conduit-proxy-error` header.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use conduit_app_integration::*;
use http_body_util::Full;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Sends `GET url` through the outbound proxy in explicit mode.
async fn via_proxy(proxy: &TestProxy, url: &str) -> http::Response<hyper::body::Incoming> {
    let mut client = http1_client(proxy.outbound).await;
    let req = http::Request::get(url).body(Full::default()).unwrap();
    bounded(client.send_request(req)).await.unwrap()
}

fn reason<B>(rsp: &http::Response<B>) -> String {
    rsp.headers()
        .get("conduit-proxy-error")
        .expect("conduit-proxy-error header")
        .to_str()
        .unwrap()
        .to_string()
}

fn unused_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn refused_upstream_is_502() {
    let proxy = TestProxy::spawn(config(&[])).await;
    let rsp = via_proxy(&proxy, &format!("http://{}/", unused_port())).await;
    assert_eq!(rsp.status(), 502);
    assert!(reason(&rsp).contains("refused"), "{}", reason(&rsp));
}

#[tokio::test]
async fn upstream_closing_without_a_response_is_502() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0; 1024];
            let _ = s.read(&mut buf).await;
            drop(s);
        }
    });
    let proxy = TestProxy::spawn(config(&[])).await;
    let rsp = via_proxy(&proxy, &format!("http://{addr}/")).await;
    assert_eq!(rsp.status(), 502);
    assert!(reason(&rsp).contains("upstream"), "{}", reason(&rsp));
}

#[tokio::test]
async fn connect_timeout_is_504() {
    // A listener with a backlog of zero that never accepts: once its queue is full, the
    // kernel drops further SYNs and connects hang.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
        {
            fillers.push(s);
        }
    }
    let proxy = TestProxy::spawn(config(&[("CONDUIT_PROXY_CONNECT_TIMEOUT", "300ms")])).await;
    let rsp = via_proxy(&proxy, &format!("http://{addr}/")).await;
    assert_eq!(rsp.status(), 504);
    assert!(reason(&rsp).contains("timed out"), "{}", reason(&rsp));
    drop(listener);
}

#[tokio::test]
async fn response_timeout_is_504() {
    let (slow, _) = http_server(|_req| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        http::Response::new(Full::default())
    })
    .await;
    let proxy = TestProxy::spawn(config(&[("CONDUIT_PROXY_RESPONSE_TIMEOUT", "200ms")])).await;
    let rsp = via_proxy(&proxy, &format!("http://{slow}/")).await;
    assert_eq!(rsp.status(), 504);
    assert!(reason(&rsp).starts_with("timeout: "), "{}", reason(&rsp));
}

#[tokio::test]
async fn grpc_clients_get_a_grpc_status() {
    let proxy = TestProxy::spawn(config(&[])).await;
    let mut client = http1_client(proxy.outbound).await;
    let req = http::Request::post(format!("http://{}/pkg.Svc/Method", unused_port()))
        .header("content-type", "application/grpc")
        .body(Full::default())
        .unwrap();
    let rsp = bounded(client.send_request(req)).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.headers()["grpc-status"], "14");
    assert!(rsp.headers().contains_key("conduit-proxy-error"));
}

#[tokio::test]
async fn malformed_requests_are_400() {
    let proxy = TestProxy::spawn(config(&[])).await;
    let rsp = raw_exchange(proxy.outbound, b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n").await;
    assert!(rsp.starts_with("HTTP/1.1 400 "), "{rsp}");
    assert!(rsp.contains("conduit-proxy-error: malformed"), "{rsp}");
}

#[tokio::test]
async fn requests_without_an_authority_are_400_in_explicit_mode() {
    let proxy = TestProxy::spawn(config(&[])).await;
    let rsp = raw_exchange(proxy.outbound, b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(
        rsp.starts_with("HTTP/1.0 400 ") || rsp.starts_with("HTTP/1.1 400 "),
        "{rsp}"
    );
    assert!(
        rsp.contains("conduit-proxy-error: request names no authority"),
        "{rsp}"
    );
}

#[tokio::test]
async fn oversized_headers_are_431() {
    let proxy = TestProxy::spawn(config(&[("CONDUIT_PROXY_HTTP_MAX_HEADER_BYTES", "16384")])).await;
    let mut req = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 20_000));
    req.extend_from_slice(b"\r\n\r\n");
    let rsp = raw_exchange(proxy.outbound, &req).await;
    assert!(rsp.starts_with("HTTP/1.1 431 "), "{rsp}");
    assert!(
        rsp.contains("conduit-proxy-error: request headers too large"),
        "{rsp}"
    );
}

#[tokio::test]
async fn slowloris_gets_408_and_the_connection_closes() {
    let proxy = TestProxy::spawn(config(&[(
        "CONDUIT_PROXY_HTTP_HEADER_READ_TIMEOUT",
        "300ms",
    )]))
    .await;
    let mut stream = TcpStream::connect(proxy.outbound).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    // ...and never finishes the head.
    let mut out = String::new();
    bounded(stream.read_to_string(&mut out)).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
    assert!(out.contains("conduit-proxy-error: "), "{out}");
}

#[tokio::test]
async fn a_keepalive_connection_left_idle_is_closed_after_the_header_timeout() {
    let (upstream, _) = hello_server("ok").await;
    let timeout = Duration::from_millis(300);
    let proxy = TestProxy::spawn(config(&[(
        "CONDUIT_PROXY_HTTP_HEADER_READ_TIMEOUT",
        "300ms",
    )]))
    .await;
    let mut stream = TcpStream::connect(proxy.outbound).await.unwrap();
    let head = format!("GET http://{upstream}/ HTTP/1.1\r\nHost: {upstream}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut first = Vec::new();
    while !first.ends_with(b"\r\n\r\nok") {
        let mut chunk = [0u8; 512];
        let n = bounded(stream.read(&mut chunk)).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&first));
        first.extend_from_slice(&chunk[..n]);
    }
    assert!(first.starts_with(b"HTTP/1.1 200 "));

    // The next head is started and never finished: the connection is closed a timeout after
    // the last response, with nothing more sent.
    let idle_from = tokio::time::Instant::now();
    stream.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    let mut rest = Vec::new();
    bounded(stream.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert!(idle_from.elapsed() >= timeout - Duration::from_millis(50));
}

#[tokio::test]
async fn a_slow_response_outlives_the_header_timeout() {
    let (upstream, _) = http_server(|_req| async {
        tokio::time::sleep(Duration::from_millis(900)).await;
        http::Response::new(Full::from("late"))
    })
    .await;
    let proxy = TestProxy::spawn(config(&[(
        "CONDUIT_PROXY_HTTP_HEADER_READ_TIMEOUT",
        "300ms",
    )]))
    .await;
    let rsp = via_proxy(&proxy, &format!("http://{upstream}/")).await;
    assert_eq!(rsp.status(), 200);
    assert_eq!(body_string(rsp).await, "late");
}

#[tokio::test]
async fn garbage_never_kills_the_proxy() {
    let (upstream, _) = hello_server("still here").await;
    let proxy = TestProxy::spawn(config(&[("CONDUIT_PROXY_DETECT_TIMEOUT", "200ms")])).await;
    let inputs: [&[u8]; 6] = [
        b"\0\0\0\0\0\0\0\0",
        b"GET / HTTP/1.1\r\n\r\n\r\n\r\n",
        b"GET http://[::1/ HTTP/1.1\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        b"CONNECT nowhere HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: -1\r\nHost: x\r\n\r\n",
    ];
    for input in inputs {
        let mut s = TcpStream::connect(proxy.outbound).await.unwrap();
        s.write_all(input).await.unwrap();
        // Whatever the answer, and whether or not the connection stays open, the proxy lives on.
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_millis(300), s.read_to_end(&mut sink)).await;
    }
    let rsp = via_proxy(&proxy, &format!("http://{upstream}/")).await;
    assert_eq!(rsp.status(), 200);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn the_connection_limit_holds_extra_connections_in_the_backlog() {
    let (upstream, _) = hello_server("ok").await;
    let proxy = TestProxy::spawn(config(&[("CONDUIT_PROXY_MAX_CONNECTIONS", "1")])).await;
    let mut first = http1_client(proxy.outbound).await;
    let req = http::Request::get(format!("http://{upstream}/"))
        .body(Full::default())
        .unwrap();
    assert_eq!(
        bounded(first.send_request(req)).await.unwrap().status(),
        200
    );

    // A second connection is accepted by the kernel but not served while the first is open.
    let mut second = TcpStream::connect(proxy.outbound).await.unwrap();
    second
        .write_all(
            format!("GET http://{upstream}/ HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut buf = [0; 1];
    let waited = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
    assert!(waited.is_err(), "the second connection must wait");
    drop(first);
    let mut out = Vec::new();
    bounded(second.read_to_end(&mut out)).await.unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{buf:?}{out}");
}

#[tokio::test]
async fn a_request_for_the_proxy_itself_is_refused_not_looped() {
    let proxy = TestProxy::spawn(config(&[])).await;
    let rsp = via_proxy(&proxy, &format!("http://{}/", proxy.outbound)).await;
    assert_eq!(rsp.status(), 508);
    assert!(reason(&rsp).contains("loop"), "{}", reason(&rsp));
}

#[tokio::test]
async fn oversized_headers_later_on_a_keepalive_connection_are_431_too() {
    let (upstream, _) = hello_server("ok").await;
    let proxy = TestProxy::spawn(config(&[("CONDUIT_PROXY_HTTP_MAX_HEADER_BYTES", "16384")])).await;
    let mut client = http1_client(proxy.outbound).await;
    let ok = http::Request::get(format!("http://{upstream}/"))
        .body(Full::default())
        .unwrap();
    assert_eq!(
        bounded(client.send_request(ok)).await.unwrap().status(),
        200
    );
    let big = http::Request::get(format!("http://{upstream}/"))
        .header("x-big", "a".repeat(20_000))
        .body(Full::default())
        .unwrap();
    let rsp = bounded(client.send_request(big)).await.unwrap();
    assert_eq!(rsp.status(), 431);
    assert!(reason(&rsp).contains("too large"), "{}", reason(&rsp));
}

/// Mixed good and bad traffic leaves nothing behind: every connection the proxy accepted or
/// opened is closed again once clients go away.
#[tokio::test]
async fn nothing_is_left_open_after_a_burst_of_mixed_traffic() {
    let (upstream, _) = hello_server("ok").await;
    let echo = tcp_echo_server().await;
    let proxy = TestProxy::spawn(config(&[
        ("CONDUIT_PROXY_DETECT_TIMEOUT", "200ms"),
        ("CONDUIT_PROXY_HTTP_HEADER_READ_TIMEOUT", "300ms"),
    ]))
    .await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let outbound = proxy.outbound;
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(outbound).await.unwrap();
            let input = match i % 5 {
                0 => format!("GET http://{upstream}/ HTTP/1.1\r\nConnection: close\r\n\r\n"),
                1 => format!("CONNECT {echo} HTTP/1.1\r\n\r\nping"),
                2 => "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n".to_string(),
                3 => "GET / HTTP/1.1\r\nHost: a\r\n".to_string(), // never finished
                _ => "\u{16}\u{3}\u{1}garbage".to_string(),
            };
            let _ = s.write_all(input.as_bytes()).await;
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut sink)).await;
        }));
    }
    for t in tasks {
        bounded(t).await.unwrap();
    }
    bounded(async {
        loop {
            let m = proxy.metrics().await;
            let open: f64 = m
                .lines()
                .filter(|l| l.starts_with("tcp_open_connections{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            // The admin scrape itself is not counted: it is not a proxied connection.
            if open == 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let m = proxy.metrics().await;
    let opened = metric_value(
        &m,
        "tcp_open_total",
        &["direction=\"outbound\"", "peer=\"src\""],
    );
    assert!(opened >= Some(200.0), "{m}");
    assert!(
        proxy.shutdown().await,
        "no connection may still be holding the drain"
    );
}
