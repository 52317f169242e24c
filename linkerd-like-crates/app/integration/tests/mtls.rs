//! Mutual TLS between two real proxies with a real controller: the wire carries no HTTP in
//! clear, both sides know who the other is, the wrong or an untrusted server is refused, and
//! certificates rotate under load with no failed request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use conduit_app_integration::*;
use conduit_identity::{Name, TrustAnchors};
use http_body_util::Full;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const BOOKS: &str = "books.demo.svc.cluster.local:7001";

/// An application that reports what it received: version, `Host` and path, and whether
/// the proxies' own marker leaked through.
async fn reporting_app() -> SocketAddr {
    let (addr, _) = http_server(|req: http::Request<hyper::body::Incoming>| async move {
        let host = req
            .headers()
            .get("host")
            .map(|h| h.to_str().unwrap_or("?").to_string())
            .unwrap_or_else(|| {
                req.uri()
                    .authority()
                    .map(|a| a.to_string())
                    .unwrap_or_default()
            });
        let leaked = req.headers().contains_key("conduit-orig-proto");
        http::Response::new(Full::from(format!(
            "books saw {:?} host={host} path={} marker={leaked}",
            req.version(),
            req.uri().path()
        )))
    })
    .await;
    addr
}

/// A registry with `books` on port 7001 served by `endpoint`, whose proxy has `identity`.
fn books_registry(endpoint: SocketAddr, identity: &str) -> String {
    meshed_registry("books", 7001, endpoint, identity)
}

fn vars(pairs: &[(String, String)], extra: &[(&str, &str)]) -> conduit_app_proxy::Config {
    let mut all: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    all.extend_from_slice(extra);
    config(&all)
}

/// A meshed proxy for service account `sa`, forwarding inbound to `app` if given.
async fn meshed_proxy(ctl: &TestController, sa: &str, app: Option<SocketAddr>) -> TestProxy {
    let app = app.map(|a| a.to_string());
    match &app {
        Some(app) => {
            ctl.meshed_proxy(sa, &[("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", app)])
                .await
        }
        None => ctl.meshed_proxy(sa, &[]).await,
    }
}

async fn get_books(web: &TestProxy, path: &str) -> http::Response<hyper::body::Incoming> {
    get_via(web.outbound, BOOKS, path).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meshed_traffic_is_mutual_tls_with_no_http_in_clear() {
    let app = reporting_app().await;
    let ctl = TestController::start_with_identity(
        &registry("books", 7001, &[]),
        Duration::from_secs(3600),
    );
    let books = meshed_proxy(&ctl, "books", Some(app)).await;
    let (tap, wire) = wiretap(books.inbound).await;
    ctl.write_registry(&books_registry(tap, &identity_name("books")));
    let web = meshed_proxy(&ctl, "web", None).await;

    // HTTP/1 from the application: carried as HTTP/2 between the proxies, restored for books.
    let rsp = get_books(&web, "/secret-path").await;
    assert_eq!(rsp.status(), 200);
    let body = body_string(rsp).await;
    assert_eq!(
        body,
        format!("books saw HTTP/1.1 host={BOOKS} path=/secret-path marker=false")
    );

    // HTTP/2 from the application stays HTTP/2.
    let mut h2 = h2_client(web.outbound).await;
    let req = http::Request::get(format!("http://{BOOKS}/h2-path"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let rsp = bounded(h2.send_request(req)).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert!(body_string(rsp).await.starts_with("books saw HTTP/2.0"));

    // The wire: a TLS handshake record first, and nothing of the requests or responses.
    let wire = wire.lock().unwrap().clone();
    assert!(wire.len() > 1000, "{} bytes", wire.len());
    assert_eq!(
        &wire[..2],
        &[0x16, 0x03],
        "starts with a TLS handshake record"
    );
    assert_none_in_clear(
        &wire,
        &[
            &b"secret-path"[..],
            b"h2-path",
            b"books saw",
            b"HTTP/1.1",
            b"PRI * HTTP/2.0",
            BOOKS.as_bytes(),
        ],
    );

    // Both proxies know who the other is.
    let web_metrics = web.metrics().await;
    let server_id = format!("server_id=\"{}\"", identity_name("books"));
    let sent = metric_value(
        &web_metrics,
        "response_total",
        &[
            "direction=\"outbound\"",
            "tls=\"true\"",
            &server_id,
            "status_code=\"200\"",
        ],
    );
    assert_eq!(sent, Some(2.0), "{web_metrics}");
    let books_metrics = books.metrics().await;
    let client_id = format!("client_id=\"{}\"", identity_name("web"));
    let received = metric_value(
        &books_metrics,
        "request_total",
        &["direction=\"inbound\"", "tls=\"true\"", &client_id],
    );
    assert_eq!(received, Some(2.0), "{books_metrics}");
    let conns = metric_value(
        &books_metrics,
        "tcp_open_total",
        &[
            "direction=\"inbound\"",
            "peer=\"src\"",
            "tls=\"true\"",
            &client_id,
        ],
    );
    // One multiplexed connection per client protocol (the HTTP/1 and the HTTP/2 client).
    assert_eq!(conns, Some(2.0), "{books_metrics}");
    let expiry = metric_value(
        &books_metrics,
        "identity_cert_expiration_timestamp_seconds",
        &[],
    );
    assert!(expiry.is_some_and(|e| e > 1.7e9), "{books_metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_crosses_the_mesh_as_http1_over_mutual_tls() {
    let app = websocket_echo_server().await;
    let ctl = TestController::start_with_identity(
        &registry("books", 7001, &[]),
        Duration::from_secs(3600),
    );
    let books = meshed_proxy(&ctl, "books", Some(app)).await;
    let (tap, wire) = wiretap(books.inbound).await;
    ctl.write_registry(&books_registry(tap, &identity_name("books")));
    let web = meshed_proxy(&ctl, "web", None).await;

    let mut stream = TcpStream::connect(web.outbound).await.unwrap();
    let req = format!("GET http://{BOOKS}/ws HTTP/1.1\r\nHost: {BOOKS}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream.write_all(b"websocket frame").await.unwrap();
    let mut buf = [0u8; 15];
    bounded(tokio::io::AsyncReadExt::read_exact(&mut stream, &mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"websocket frame");
    let wire = wire.lock().unwrap().clone();
    assert_eq!(&wire[..2], &[0x16, 0x03]);
    assert!(
        !wire.windows(15).any(|w| w == b"websocket frame"),
        "the frame crossed in clear"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_the_wrong_identity_is_refused() {
    let ctl = TestController::start_with_identity(
        &registry("books", 7001, &[]),
        Duration::from_secs(3600),
    );
    // An impostor: a valid mesh certificate, but for authors, served whatever name is asked.
    let authors = ctl.credentials("authors").await;
    let server = conduit_tls::ServerTls::new(authors).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let impostor = listener.local_addr().unwrap();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let seen = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = server.accept(tcp).await;
        }
    });
    ctl.write_registry(&books_registry(impostor, &identity_name("books")));
    let web = meshed_proxy(&ctl, "web", None).await;
    let rsp = get_books(&web, "/").await;
    assert_eq!(rsp.status(), 502);
    let reason = rsp.headers()["conduit-proxy-error"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("mTLS to books.demo"), "{reason}");
    assert!(reason.contains("not valid for name"), "{reason}");
    assert!(
        reason.contains("authors.demo"),
        "names what was presented: {reason}"
    );
    assert!(handshakes.load(Ordering::SeqCst) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_for_another_name_passes_through_the_inbound_proxy_untouched() {
    // A ClientHello for a name that is not the proxy's is not the proxy's to terminate: the
    // bytes reach the application as they were sent.
    let ctl = TestController::start_with_identity(
        &registry("books", 7001, &[]),
        Duration::from_secs(3600),
    );
    let echo = tcp_echo_server().await;
    let books = meshed_proxy(&ctl, "books", Some(echo)).await;
    let web = ctl.credentials("web").await;
    let client = conduit_tls::ClientTls::new(web).unwrap();
    let tcp = TcpStream::connect(books.inbound).await.unwrap();
    let other = Name::parse("db.example.com").unwrap();
    // The echo server is not TLS: it sends our own ClientHello back, byte for byte.
    let err = bounded(client.connect(&other, true, tcp))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("got ClientHello"), "{err}");
    let metrics = books.metrics().await;
    let opaque = metric_value(
        &metrics,
        "tcp_open_total",
        &["direction=\"inbound\"", "peer=\"dst\""],
    );
    assert_eq!(opaque, Some(1.0), "carried to the app as TCP: {metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_from_another_mesh_is_refused() {
    let app = reporting_app().await;
    let ours = TestController::start_with_identity(
        &registry("books", 7001, &[]),
        Duration::from_secs(3600),
    );
    let theirs = TestController::start_with_identity(
        &registry("books", 7001, &[]),
        Duration::from_secs(3600),
    );
    // A books proxy with a certificate from another mesh's CA.
    let stranger = meshed_proxy(&theirs, "books", Some(app)).await;
    ours.write_registry(&books_registry(stranger.inbound, &identity_name("books")));
    let web = meshed_proxy(&ours, "web", None).await;
    let rsp = get_books(&web, "/").await;
    assert_eq!(rsp.status(), 502);
    let reason = rsp.headers()["conduit-proxy-error"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("invalid peer certificate"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_and_the_issuer_rotate_under_load_with_no_failed_request() {
    let app = reporting_app().await;
    // Three-second certificates: each proxy renews about every two seconds.
    let ctl =
        TestController::start_with_identity(&registry("books", 7001, &[]), Duration::from_secs(3));
    let books = meshed_proxy(&ctl, "books", Some(app)).await;
    ctl.write_registry(&books_registry(books.inbound, &identity_name("books")));
    let web = meshed_proxy(&ctl, "web", None).await;
    let anchors = TrustAnchors::from_pem(&ctl.trust_anchors()).unwrap();
    let books_name = Name::parse(&identity_name("books")).unwrap();
    let first = conduit_tls::served_chain(books.inbound, &books_name, &anchors)
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let outbound = web.outbound;
        load.push(tokio::spawn(async move {
            let mut client = http1_client(outbound).await;
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::get(format!("http://{BOOKS}/load"))
                    .header("host", BOOKS)
                    .body(Full::<Bytes>::default())
                    .unwrap();
                match bounded(client.send_request(req)).await {
                    Ok(rsp) if rsp.status() == 200 => {
                        body_string(rsp).await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }

    // Watch the served certificate change while the load runs; rotate the issuer midway.
    let mut leaves = vec![first[0].clone()];
    let mut new_connections_ok = 0;
    for tick in 0..14 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if tick == 5 {
            ctl.rotate_issuer();
        }
        // A fresh handshake each time, as new connections after a renewal would make.
        let chain = conduit_tls::served_chain(books.inbound, &books_name, &anchors)
            .await
            .unwrap();
        new_connections_ok += 1;
        if chain[0] != *leaves.last().unwrap() {
            leaves.push(chain[0].clone());
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let last = conduit_tls::served_chain(books.inbound, &books_name, &anchors)
        .await
        .unwrap();

    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} failed of {}", ok + failed);
    assert!(ok > 100, "{ok} requests");
    assert_eq!(new_connections_ok, 14);
    assert!(
        leaves.len() >= 3,
        "books renewed {} times in 7s",
        leaves.len() - 1
    );
    assert_ne!(first[1], last[1], "the issuer in the served chain changed");
}

/// A registry: books (pod books-0, workload books) behind `books_inbound`, a Server for the
/// app's `port` speaking `protocol`, and an AuthorizationPolicy for `identities`.
fn policy_registry(
    books_inbound: SocketAddr,
    port: u16,
    protocol: &str,
    identities: &[&str],
) -> String {
    let ids = identities
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{}            labels: {{pod: books-0, workload: books}}
servers:
  - name: books-http
    namespace: demo
    spec: {{podSelector: {{workload: books}}, port: {port}, proxyProtocol: {protocol}}}
authorizationPolicies:
  - name: books-callers
    namespace: demo
    spec: {{server: books-http, identities: [{ids}]}}
",
        books_registry(books_inbound, &identity_name("books"))
    )
}

async fn books_with_policy(ctl: &TestController, app: SocketAddr) -> TestProxy {
    let mut vars = ctl.meshed_vars("books");
    vars.push((
        "CONDUIT_PROXY_POLICY_WORKLOAD".into(),
        "demo:books-0".into(),
    ));
    vars.push(("CONDUIT_PROXY_INBOUND_FORWARD_ADDR".into(), app.to_string()));
    let proxy = TestProxy::spawn(vars_config(&vars)).await;
    until_ready(proxy.admin).await;
    proxy
}

fn vars_config(pairs: &[(String, String)]) -> conduit_app_proxy::Config {
    vars(pairs, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_to_a_port_that_requires_mtls_is_refused() {
    let app = reporting_app().await;
    let ctl = TestController::start_with_identity(
        &registry("books", 7001, &[]),
        Duration::from_secs(3600),
    );
    let books = books_with_policy(&ctl, app).await;
    ctl.write_registry(&policy_registry(
        books.inbound,
        app.port(),
        "HTTP/1",
        &[&identity_name("web")],
    ));
    tokio::time::sleep(Duration::from_millis(600)).await;

    // Plaintext HTTP straight to the inbound proxy: 403, saying why.
    let rsp = get(books.inbound, "/").await;
    assert_eq!(rsp.status(), 403);
    let reason = rsp.headers()["conduit-proxy-error"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        reason.starts_with(
            "unauthorized: 127.0.0.1 (no mTLS identity) is not allowed by server books-http"
        ),
        "{reason}"
    );
    assert!(reason.contains("mTLS required"), "{reason}");

    // The meshed caller the policy names gets through.
    let web = meshed_proxy(&ctl, "web", None).await;
    let rsp = get_books(&web, "/allowed").await;
    assert_eq!(rsp.status(), 200);

    let metrics = books.metrics().await;
    let denied = metric_value(
        &metrics,
        "inbound_http_authz_deny_total",
        &["srv_name=\"books-http\"", "reason=\"no_identity\""],
    );
    assert_eq!(denied, Some(1.0), "{metrics}");
}

/// Writes `bytes`, half-closes, and reads until the server closes.
async fn half_closed_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = bounded(TcpStream::connect(addr)).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut out = Vec::new();
    let _ = bounded(tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_protocol_hint_replaces_detection_for_plaintext_clients() {
    let echo = tcp_echo_server().await;
    let ctl = TestController::start_with_identity(
        &registry("books", 7001, &[]),
        Duration::from_secs(3600),
    );
    let books = books_with_policy(&ctl, echo).await;
    let open = |protocol: &str| {
        policy_registry(books.inbound, echo.port(), protocol, &[])
            .replace("identities: []", "unauthenticated: true")
    };
    let not_http = b"hello\r\n\r\n";
    // Detected, bytes that are not HTTP are opaque TCP: the app echoes them.
    ctl.write_registry(&open("unknown"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        half_closed_exchange(books.inbound, not_http).await,
        "hello\r\n\r\n"
    );

    // The Server says HTTP/1: the same bytes are read as HTTP, and refused as HTTP.
    ctl.write_registry(&open("HTTP/1"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let answer = half_closed_exchange(books.inbound, not_http).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    // The Server says HTTP/2: an HTTP/1 request is not HTTP/2 and reaches nothing.
    ctl.write_registry(&open("HTTP/2"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let request = "GET / HTTP/1.1\r\nhost: books\r\n\r\n";
    let answer = half_closed_exchange(books.inbound, request.as_bytes()).await;
    assert!(!answer.contains("GET /"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_outside_the_authorization_gets_403_and_a_change_applies_within_a_second() {
    let app = reporting_app().await;
    let ctl = TestController::start_with_identity(
        &registry("books", 7001, &[]),
        Duration::from_secs(3600),
    );
    let books = books_with_policy(&ctl, app).await;
    ctl.write_registry(&policy_registry(
        books.inbound,
        app.port(),
        "HTTP/1",
        &[&identity_name("web")],
    ));
    let authors = meshed_proxy(&ctl, "authors", None).await;
    let web = meshed_proxy(&ctl, "web", None).await;

    // authors is meshed, but not authorized: the 403 comes back through its own proxy.
    let rsp = get_books(&authors, "/").await;
    assert_eq!(rsp.status(), 403);
    let reason = rsp.headers()["conduit-proxy-error"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(reason.contains(&identity_name("authors")), "{reason}");
    assert!(reason.contains("identity not authorized"), "{reason}");
    assert_eq!(get_books(&web, "/").await.status(), 200);

    // Open books to every identity in namespace demo: authors gets in within a second.
    let changed = std::time::Instant::now();
    ctl.write_registry(&policy_registry(
        books.inbound,
        app.port(),
        "HTTP/1",
        &["*.demo.serviceaccount.identity.conduit.cluster.local"],
    ));
    let took = bounded(async {
        loop {
            if get_books(&authors, "/").await.status() == 200 {
                return changed.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(took < Duration::from_secs(1), "took {took:?}");

    let metrics = books.metrics().await;
    let denied = metric_value(
        &metrics,
        "inbound_http_authz_deny_total",
        &["srv_name=\"books-http\"", "reason=\"identity\""],
    );
    assert!(denied.is_some_and(|d| d >= 1.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_opaque_connection_is_closed_and_counted() {
    let echo = tcp_echo_server().await;
    let ctl = TestController::start_with_identity(
        &registry("books", 7001, &[]),
        Duration::from_secs(3600),
    );
    let books = books_with_policy(&ctl, echo).await;
    ctl.write_registry(&policy_registry(
        books.inbound,
        echo.port(),
        "opaque",
        &[&identity_name("web")],
    ));
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Plaintext bytes to an opaque port only mTLS clients may use: closed, nothing echoed.
    let out = raw_exchange(books.inbound, b"hello\n").await;
    assert_eq!(out, "");
    let metrics = books.metrics().await;
    let denied = metric_value(
        &metrics,
        "inbound_tcp_authz_deny_total",
        &["srv_name=\"books-http\"", "reason=\"no_identity\""],
    );
    assert_eq!(denied, Some(1.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_reaches_the_controller_over_tls_so_its_token_never_crosses_in_clear() {
    let ctl = TestController::start_with_identity(
        &registry("books", 7001, &[]),
        Duration::from_secs(3600),
    );
    let (tap, wire) = wiretap(ctl.grpc).await;
    let mut vars = ctl.meshed_vars("web");
    for (k, v) in vars.iter_mut() {
        if k == "CONDUIT_PROXY_DESTINATION_SVC_ADDR" {
            *v = tap.to_string();
        }
    }
    let token = std::fs::read_to_string(
        &vars
            .iter()
            .find(|(k, _)| k == "CONDUIT_PROXY_IDENTITY_TOKEN_FILE")
            .unwrap()
            .1,
    )
    .unwrap();
    let web = TestProxy::spawn(vars_config(&vars)).await;
    until_ready(web.admin).await; // certified through the tap
                                  // Discovery goes the same way.
    let rsp = get_books(&web, "/").await;
    assert_eq!(rsp.status(), 503, "books has no endpoints");

    let wire = wire.lock().unwrap().clone();
    assert_eq!(&wire[..2], &[0x16, 0x03], "TLS from the first byte");
    assert_none_in_clear(
        &wire,
        &[
            token.trim().as_bytes(),
            b"conduit.v1.",
            b"books.demo.svc.cluster.local",
            b"web.demo.serviceaccount",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_finishes_the_handshake_is_given_up_on_in_time() {
    let ctl = TestController::start_with_identity(
        &registry("books", 7001, &[]),
        Duration::from_secs(3600),
    );
    // Accepts, reads the ClientHello, answers nothing.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    ctl.write_registry(&books_registry(silent, &identity_name("books")));
    let mut vars = ctl.meshed_vars("web");
    vars.push(("CONDUIT_PROXY_CONNECT_TIMEOUT".into(), "300ms".into()));
    let web = TestProxy::spawn(vars_config(&vars)).await;
    until_ready(web.admin).await;
    let started = std::time::Instant::now();
    let rsp = get_books(&web, "/").await;
    assert_eq!(rsp.status(), 502);
    let reason = rsp.headers()["conduit-proxy-error"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("no TLS handshake within 300ms"), "{reason}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_meshed_requests_reach_an_http1_app_concurrently() {
    // An app that holds each request until eight are in at once (or a second passes), and
    // reports the most it saw together. Between the proxies the requests share one HTTP/2
    // connection; books' proxy must spread them over HTTP/1 connections, not queue them
    // behind one.
    let (inflight, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (i, m) = (inflight.clone(), most.clone());
    let (app, _) = http_server(move |_req| {
        let (inflight, most) = (i.clone(), m.clone());
        async move {
            let now = inflight.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
            while inflight.load(Ordering::SeqCst) < 8 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            inflight.fetch_sub(1, Ordering::SeqCst);
            http::Response::new(Full::from("ok"))
        }
    })
    .await;
    let ctl = TestController::start_with_identity(
        &registry("books", 7001, &[]),
        Duration::from_secs(3600),
    );
    let books = meshed_proxy(&ctl, "books", Some(app)).await;
    ctl.write_registry(&books_registry(books.inbound, &identity_name("books")));
    let web = meshed_proxy(&ctl, "web", None).await;
    // Once web's proxy balances to books (over mTLS, HTTP/2), send eight at once.
    assert_eq!(body_string(get_books(&web, "/first").await).await, "ok");
    most.store(0, Ordering::SeqCst);
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let outbound = web.outbound;
        all.spawn(async move { get_via(outbound, BOOKS, "/together").await.status() });
    }
    while let Some(status) = all.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        8,
        "the app saw the requests one by one"
    );
}
