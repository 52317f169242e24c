//! Opaque TCP between two meshed proxies, with a real controller, captured from the
//! application by real iptables rules in a network namespace of the test's own (so that
//! the proxy sees a real `SO_ORIGINAL_DST`): the connections are balanced over the
//! service's endpoints, cross between the proxies over mTLS behind a transport header,
//! with nothing in clear on the wire, even on an opaque port whose server speaks first;
//! a server with the wrong identity, a header naming the peer proxy's own admin port, and
//! plaintext to the inbound listener are refused.
//!
//! Needs root. Without it the test prints why and skips, except under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use conduit_app_integration::*;
use conduit_discovery::{Discovery, Resolution};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The services' cluster IP: the test's iptables rule sends it to web's outbound proxy.
const CLUSTER_IP: &str = "127.0.9.9";

/// A server that speaks first, as MySQL or SMTP do (`hello from NAME\n`), then echoes
/// until the client half-closes.
async fn greeting_server(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if stream
                    .write_all(format!("hello from {name}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// Reads one line.
async fn line(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while bounded(stream.read(&mut byte)).await.unwrap() == 1 && byte[0] != b'\n' {
        out.push(byte[0]);
    }
    String::from_utf8(out).unwrap()
}

/// Sends `data`, half-closes, and reads all that comes back.
async fn exchange(stream: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    stream.write_all(data).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut back = Vec::new();
    let _ = bounded(stream.read_to_end(&mut back)).await;
    back
}

/// Waits until the controller serves endpoints for `authority`.
async fn until_known(ctl: &TestController, authority: &str) {
    let discovery = Discovery::new(&ctl.grpc.to_string(), "").unwrap();
    let mut resolved = discovery.resolve(authority);
    bounded(async {
        loop {
            if matches!(resolved.update(), Resolution::Known(set) if !set.is_empty()) {
                return;
            }
            resolved.changed().await;
        }
    })
    .await
}

fn endpoint(addr: SocketAddr, identity: &str, inbound: SocketAddr) -> String {
    format!(
        "          - address: {addr}\n            identity: {identity}\n            inboundPort: {}\n",
        inbound.port()
    )
}

#[test]
fn opaque_tcp_between_meshed_proxies_is_balanced_mtls() {
    in_own_netns("opaque_tcp_between_meshed_proxies_is_balanced_mtls", || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(opaque_mtls())
    });
}

async fn opaque_mtls() {
    let db = [greeting_server("db-0").await, greeting_server("db-1").await];
    let echo = tcp_echo_server().await;
    let ctl = TestController::start_with_identity("services: []\n", Duration::from_secs(3600));
    // No forward address: books' proxy sends opaque TCP to the port each header names.
    let books = ctl
        .meshed_proxy("books", &[("CONDUIT_PROXY_DETECT_TIMEOUT", "1s")])
        .await;
    let (tap, wire) = wiretap(books.inbound).await;
    let books_id = identity_name("books");
    let authors_id = identity_name("authors");
    // db on 5432, an opaque port by default; echo on 7009, where web's proxy detects;
    // fake, whose endpoint claims to be authors but is books' proxy; and sneak, whose
    // endpoint is books' proxy's own admin server (on 3306, opaque, so bytes are carried).
    let registry = format!(
        "services:\n  - name: db\n    namespace: demo\n    clusterIPs: [{CLUSTER_IP}]\n    ports:\n      - port: 5432\n        opaque: true\n        endpoints:\n{}{}      - port: 7009\n        endpoints:\n{}  - name: fake\n    namespace: demo\n    clusterIPs: [127.0.9.10]\n    ports:\n      - port: 7010\n        endpoints:\n{}  - name: sneak\n    namespace: demo\n    clusterIPs: [127.0.9.11]\n    ports:\n      - port: 3306\n        endpoints:\n{}",
        endpoint(db[0], &books_id, tap),
        endpoint(db[1], &books_id, tap),
        endpoint(echo, &books_id, tap),
        endpoint(echo, &authors_id, tap),
        endpoint(books.admin, &books_id, tap),
    );
    ctl.write_registry(&registry);
    // A detect timeout longer than the test's bound: a server-speaks-first connection that
    // waited on detection would fail the test instead of passing slowly.
    let web = ctl
        .meshed_proxy("web", &[("CONDUIT_PROXY_DETECT_TIMEOUT", "60s")])
        .await;
    let to = web.outbound.port().to_string();
    for ip in [CLUSTER_IP, "127.0.9.10", "127.0.9.11"] {
        iptables(&[
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-d",
            ip,
            "-j",
            "REDIRECT",
            "--to-ports",
            &to,
        ]);
    }
    for authority in [
        "127.0.9.9:5432",
        "127.0.9.9:7009",
        "127.0.9.10:7010",
        "127.0.9.11:3306",
    ] {
        until_known(&ctl, authority).await;
    }

    // The opaque port: four connections held open at once are spread over both endpoints,
    // each greeted by its server without sending a byte first.
    let mut held = Vec::new();
    let mut greeted = Vec::new();
    for _ in 0..4 {
        let mut conn = bounded(TcpStream::connect(("127.0.9.9", 5432)))
            .await
            .unwrap();
        greeted.push(line(&mut conn).await);
        held.push(conn);
    }
    greeted.sort();
    greeted.dedup();
    assert_eq!(greeted, ["hello from db-0", "hello from db-1"]);
    for conn in &mut held {
        let back = exchange(conn, b"SELECT 'opaque-secret';").await;
        assert_eq!(back, b"SELECT 'opaque-secret';");
    }

    // A port web's proxy detects on: bytes that are not HTTP are carried the same way.
    let mut conn = bounded(TcpStream::connect(("127.0.9.9", 7009)))
        .await
        .unwrap();
    let back = exchange(&mut conn, b"PING detected-secret\n").await;
    assert_eq!(back, b"PING detected-secret\n");

    // The wire between the proxies: TLS records only.
    let seen = wire.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert_eq!(seen[0], 0x16, "a TLS handshake record starts the wire");
    assert_none_in_clear(
        &seen,
        &[
            &b"opaque-secret"[..],
            b"detected-secret",
            b"hello from",
            b"CONDUIT\n",
        ],
    );

    // Both proxies counted the connections as mTLS, with each other's identity.
    let db0 = format!("target_addr=\"{}\"", db[0]);
    let web_metrics = web.metrics().await;
    let sent = metric_value(
        &web_metrics,
        "tcp_open_total",
        &[
            "direction=\"outbound\"",
            "peer=\"dst\"",
            &db0,
            "tls=\"true\"",
            &format!("server_id=\"{books_id}\""),
        ],
    );
    assert!(sent >= Some(1.0), "{web_metrics}");
    let books_metrics = books.metrics().await;
    let received = metric_value(
        &books_metrics,
        "tcp_open_total",
        &[
            "direction=\"inbound\"",
            "peer=\"src\"",
            &db0,
            "tls=\"true\"",
            &format!("client_id=\"{}\"", identity_name("web")),
        ],
    );
    assert!(received >= Some(1.0), "{books_metrics}");

    // An endpoint whose proxy is not who discovery says: refused, nothing reaches echo.
    let mut conn = bounded(TcpStream::connect(("127.0.9.10", 7010)))
        .await
        .unwrap();
    assert_eq!(exchange(&mut conn, b"PING impostor\n").await, b"");

    // A header naming books' proxy's own admin port: refused, and books' proxy, whose admin
    // server takes `/shutdown` from loopback, keeps running.
    let mut conn = bounded(TcpStream::connect(("127.0.9.11", 3306)))
        .await
        .unwrap();
    let shutdown = b"POST /shutdown HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\n\r\n";
    // Not half-closed: an HTTP server may drop a request whose client half-closes.
    conn.write_all(shutdown).await.unwrap();
    let mut answer = [0u8; 64];
    let n = bounded(conn.read(&mut answer)).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&answer[..n]),
        "",
        "the admin server answered"
    );
    assert!(books.metrics().await.contains("tcp_open_total"));

    // Plaintext straight to books' inbound listener, which takes only mTLS from proxies
    // there (it has no forward address): closed, nothing echoed.
    let mut conn = bounded(TcpStream::connect(books.inbound)).await.unwrap();
    assert_eq!(exchange(&mut conn, b"PING plaintext\n").await, b"");
}
