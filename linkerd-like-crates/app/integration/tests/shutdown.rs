//! Graceful shutdown: stop accepting, let in-flight requests finish within the grace period.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use conduit_app_integration::*;
use http_body_util::Full;
use std::time::Duration;
use tokio::net::TcpStream;

#[tokio::test]
async fn in_flight_requests_finish_and_new_connections_are_refused() {
    let (slow, _) = http_server(|_req| async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        http::Response::new(Full::from("finished"))
    })
    .await;
    let mut proxy = TestProxy::spawn(config(&[])).await;
    let outbound = proxy.outbound;
    let mut client = http1_client(outbound).await;
    let req = http::Request::get(format!("http://{slow}/"))
        .body(Full::default())
        .unwrap();
    let in_flight = tokio::spawn(async move { client.send_request(req).await });
    tokio::time::sleep(Duration::from_millis(150)).await;

    proxy.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        TcpStream::connect(outbound).await.is_err(),
        "the listener must be closed once shutdown begins"
    );
    let rsp = bounded(in_flight).await.unwrap().unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(body_string(rsp).await, "finished");
    assert!(
        proxy.finished().await,
        "everything drained within the grace period"
    );
}

#[tokio::test]
async fn the_grace_period_bounds_the_drain() {
    let (stuck, _) = http_server(|_req| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        http::Response::new(Full::default())
    })
    .await;
    let mut proxy =
        TestProxy::spawn(config(&[("CONDUIT_PROXY_SHUTDOWN_GRACE_PERIOD", "300ms")])).await;
    let mut client = http1_client(proxy.outbound).await;
    let req = http::Request::get(format!("http://{stuck}/"))
        .body(Full::default())
        .unwrap();
    let _in_flight = tokio::spawn(async move { client.send_request(req).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = std::time::Instant::now();
    proxy.begin_shutdown();
    assert!(!proxy.finished().await, "a stuck request cannot drain");
    assert!(start.elapsed() < Duration::from_secs(3));
}
