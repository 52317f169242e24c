//! Opaque TCP through the real proxy: detection falls through to TCP, half-close is carried,
//! opaque ports skip detection so server-speaks-first protocols do not wait.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use conduit_app_integration::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn opaque_echo_with_half_close() {
    let echo = tcp_echo_server().await;
    let fwd = echo.to_string();
    let proxy = TestProxy::spawn(config(&[("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", &fwd)])).await;
    let mut stream = TcpStream::connect(proxy.inbound).await.unwrap();
    // Not HTTP: a binary greeting.
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    stream.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    stream.write_all(&payload).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut out = Vec::new();
    bounded(stream.read_to_end(&mut out)).await.unwrap();
    assert_eq!(out.len(), payload.len() + 3);
    assert_eq!(&out[3..], &payload[..]);

    let m = proxy.metrics().await;
    let dst = format!("target_addr=\"{echo}\"");
    assert_eq!(
        metric_value(&m, "tcp_open_total", &["peer=\"dst\"", &dst]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "tcp_write_bytes_total", &["peer=\"dst\"", &dst]),
        Some((payload.len() + 3) as f64)
    );
    // The connection is closed on both sides once the exchange ends.
    bounded(async {
        loop {
            let m = proxy.metrics().await;
            if metric_value(&m, "tcp_open_connections", &["peer=\"src\""]) == Some(0.0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn opaque_ports_skip_detection_for_server_first_protocols() {
    // A server that speaks first, like SMTP or MySQL.
    let server = banner_server(b"220 ready\r\n").await;
    let fwd = server.to_string();
    let port = server.port().to_string();
    let proxy = TestProxy::spawn(config(&[
        ("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", &fwd),
        ("CONDUIT_PROXY_OPAQUE_PORTS", &port),
        ("CONDUIT_PROXY_DETECT_TIMEOUT", "10s"),
    ]))
    .await;
    let start = Instant::now();
    let mut stream = TcpStream::connect(proxy.inbound).await.unwrap();
    let mut banner = [0; 11];
    bounded(stream.read_exact(&mut banner)).await.unwrap();
    assert_eq!(&banner, b"220 ready\r\n");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the banner waited for detection"
    );
}

#[tokio::test]
async fn a_silent_client_becomes_tcp_after_the_detect_timeout() {
    let server = banner_server(b"hello").await;
    let fwd = server.to_string();
    let proxy = TestProxy::spawn(config(&[
        ("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", &fwd),
        ("CONDUIT_PROXY_DETECT_TIMEOUT", "300ms"),
    ]))
    .await;
    let start = Instant::now();
    let mut stream = TcpStream::connect(proxy.inbound).await.unwrap();
    let mut banner = [0; 5];
    bounded(stream.read_exact(&mut banner)).await.unwrap();
    assert_eq!(&banner, b"hello");
    assert!(start.elapsed() >= Duration::from_millis(250));
}

/// A server that greets each connection with `banner` before the client says anything.
async fn banner_server(banner: &'static [u8]) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                s.write_all(banner).await.unwrap();
                let mut buf = [0; 64];
                let _ = s.read(&mut buf).await;
            });
        }
    });
    server
}
