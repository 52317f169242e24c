//! The admin server over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use conduit_app_admin::{Admin, LogLevel};
use conduit_metrics::ProxyMetrics;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Accepts any filter without brackets.
#[derive(Default)]
struct FakeLevel(Mutex<String>);

impl LogLevel for FakeLevel {
    fn get(&self) -> String {
        self.0.lock().unwrap().clone()
    }
    fn set(&self, filter: &str) -> Result<(), String> {
        if filter.contains('[') {
            return Err("brackets are not allowed".into());
        }
        *self.0.lock().unwrap() = filter.to_string();
        Ok(())
    }
}

async fn start() -> (SocketAddr, Arc<Notify>, conduit_stack::drain::Signal) {
    let listener = conduit_transport::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr();
    let shutdown = Arc::new(Notify::new());
    let admin = Admin::new(
        ProxyMetrics::default(),
        Arc::new(FakeLevel::default()),
        shutdown.clone(),
    );
    let (signal, watch) = conduit_stack::drain::channel();
    tokio::spawn(admin.serve(listener, watch));
    (addr, shutdown, signal)
}

async fn call(addr: SocketAddr, method: &str, path: &str, body: Bytes) -> http::Response<Bytes> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "admin")
        .body(Full::new(body))
        .unwrap();
    let rsp = tokio::time::timeout(Duration::from_secs(5), send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let (parts, body) = rsp.into_parts();
    http::Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn routes_methods_and_shutdown() {
    let (addr, shutdown, _signal) = start().await;

    let metrics = call(addr, "GET", "/metrics", Bytes::new()).await;
    assert_eq!(metrics.status(), 200);
    assert_eq!(
        metrics.headers()["content-type"],
        "text/plain; version=0.0.4"
    );
    let text = String::from_utf8(metrics.body().to_vec()).unwrap();
    assert!(text.contains("# TYPE request_total counter"), "{text}");
    assert!(text.contains("process_start_time_seconds "), "{text}");

    assert_eq!(
        call(addr, "GET", "/ready", Bytes::new()).await.status(),
        200
    );
    assert_eq!(call(addr, "GET", "/live", Bytes::new()).await.status(), 200);
    assert_eq!(
        call(addr, "GET", "/other", Bytes::new()).await.status(),
        404
    );
    let wrong = call(addr, "DELETE", "/metrics", Bytes::new()).await;
    assert_eq!(wrong.status(), 405);
    assert_eq!(wrong.headers()["allow"], "GET");

    let notified = shutdown.notified();
    assert_eq!(
        call(addr, "POST", "/shutdown", Bytes::new()).await.status(),
        200
    );
    tokio::time::timeout(Duration::from_secs(5), notified)
        .await
        .unwrap();
}

#[tokio::test]
async fn log_level_is_read_and_replaced() {
    let (addr, _, _signal) = start().await;
    let put = call(
        addr,
        "PUT",
        "/proxy-log-level",
        Bytes::from_static(b"debug\n"),
    )
    .await;
    assert_eq!(put.status(), 204);
    let get = call(addr, "GET", "/proxy-log-level", Bytes::new()).await;
    assert_eq!(get.body().as_ref(), b"debug\n");

    let bad = call(addr, "PUT", "/proxy-log-level", Bytes::from_static(b"[x]")).await;
    assert_eq!(bad.status(), 400);
    assert!(String::from_utf8_lossy(bad.body()).contains("brackets"));

    let huge = call(
        addr,
        "PUT",
        "/proxy-log-level",
        Bytes::from(vec![b'a'; 10_000]),
    )
    .await;
    assert_eq!(huge.status(), 413);
    let get = call(addr, "GET", "/proxy-log-level", Bytes::new()).await;
    assert_eq!(
        get.body().as_ref(),
        b"debug\n",
        "refused filters change nothing"
    );
}

#[tokio::test]
async fn draining_closes_the_listener() {
    let (addr, _, signal) = start().await;
    assert_eq!(call(addr, "GET", "/live", Bytes::new()).await.status(), 200);
    tokio::time::timeout(Duration::from_secs(5), signal.drain())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn ready_waits_for_the_readiness_flag_when_one_is_given() {
    let listener = conduit_transport::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr();
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let admin = Admin::new(
        ProxyMetrics::default(),
        Arc::new(FakeLevel::default()),
        Arc::new(Notify::new()),
    )
    .with_readiness(ready.clone());
    let (_signal, watch) = conduit_stack::drain::channel();
    tokio::spawn(admin.serve(listener, watch));

    assert_eq!(
        call(addr, "GET", "/ready", Bytes::new()).await.status(),
        503
    );
    assert_eq!(call(addr, "GET", "/live", Bytes::new()).await.status(), 200);
    ready.store(true, std::sync::atomic::Ordering::Release);
    assert_eq!(
        call(addr, "GET", "/ready", Bytes::new()).await.status(),
        200
    );
}
