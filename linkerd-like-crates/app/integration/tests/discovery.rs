//! The proxy with the controller: requests balanced over the endpoints the controller gives,
//! through changes, a slow endpoint, and the controller's death and return.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use conduit_app_integration::*;
use http_body_util::Full;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const BOOKS: &str = "http://books.demo.svc.cluster.local:7001/";

fn proxy_config(ctl: &TestController, extra: &[(&str, &str)]) -> conduit_app_proxy::Config {
    let grpc = ctl.grpc.to_string();
    let mut vars = vec![("CONDUIT_PROXY_DESTINATION_SVC_ADDR", grpc.as_str())];
    vars.extend_from_slice(extra);
    config(&vars)
}

/// Three servers answering with their own name; `slow` ones take 20 ms.
async fn backends(slow: &[usize]) -> Vec<(SocketAddr, Seen)> {
    let mut out = Vec::new();
    for i in 0..3 {
        let delay = if slow.contains(&i) { 20 } else { 0 };
        let server = http_server(move |_req| async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            http::Response::new(Full::from(format!("backend-{i}")))
        })
        .await;
        out.push(server);
    }
    out
}

/// Sends `total` requests for `url` over `concurrency` connections; returns the statuses.
async fn load(proxy: SocketAddr, url: &str, total: usize, concurrency: usize) -> Vec<u16> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, url) = (next.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            let mut client = http1_client(proxy).await;
            let mut statuses = Vec::new();
            while next.fetch_add(1, Ordering::SeqCst) < total {
                let req = http::Request::get(&url).body(Full::default()).unwrap();
                let rsp = bounded(client.send_request(req)).await.unwrap();
                statuses.push(rsp.status().as_u16());
                body_string(rsp).await;
            }
            statuses
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

fn counts(backends: &[(SocketAddr, Seen)]) -> Vec<usize> {
    backends.iter().map(|(_, seen)| seen.requests()).collect()
}

/// Waits until `check` holds for the backends' counts after sending one more request each
/// round, so that a change has reached the proxy.
async fn eventually(
    proxy: SocketAddr,
    backends: &[(SocketAddr, Seen)],
    check: impl Fn(&[usize]) -> bool,
) {
    bounded(async {
        loop {
            let before = counts(backends);
            load(proxy, BOOKS, 6, 1).await;
            let after = counts(backends);
            let delta: Vec<usize> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
            if check(&delta) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn requests_spread_evenly_over_the_endpoints() {
    let backends = backends(&[]).await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.0).collect();
    let ctl = TestController::start(&registry("books", 7001, &addrs));
    let proxy = TestProxy::spawn(proxy_config(&ctl, &[])).await;

    let statuses = load(proxy.outbound, BOOKS, 600, 8).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let counts = counts(&backends);
    for c in &counts {
        assert!(
            *c > 120,
            "each of three gets a fair share of 600: {counts:?}"
        );
    }
}

#[tokio::test]
async fn a_slow_endpoint_gets_clearly_less() {
    let backends = backends(&[0]).await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.0).collect();
    let ctl = TestController::start(&registry("books", 7001, &addrs));
    let proxy = TestProxy::spawn(proxy_config(&ctl, &[])).await;

    let statuses = load(proxy.outbound, BOOKS, 600, 8).await;
    assert!(statuses.iter().all(|s| *s == 200));
    let counts = counts(&backends);
    assert!(
        counts[0] * 4 < counts[1].min(counts[2]),
        "the slow endpoint should get far less than the others: {counts:?}"
    );
}

#[tokio::test]
async fn an_endpoint_removed_under_load_fails_no_request() {
    let backends = backends(&[]).await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.0).collect();
    let ctl = TestController::start(&registry("books", 7001, &addrs));
    let proxy = TestProxy::spawn(proxy_config(&ctl, &[])).await;

    let running = Arc::new(AtomicBool::new(true));
    let failures = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (running, failures) = (running.clone(), failures.clone());
        let outbound = proxy.outbound;
        tasks.push(tokio::spawn(async move {
            let mut client = http1_client(outbound).await;
            while running.load(Ordering::SeqCst) {
                let req = http::Request::get(BOOKS).body(Full::default()).unwrap();
                match bounded(client.send_request(req)).await {
                    Ok(rsp) if rsp.status() == 200 => {
                        body_string(rsp).await;
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    ctl.write_registry(&registry("books", 7001, &addrs[..2]));
    // The change propagates (a file poll, a stream update), then the removed backend is idle.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let removed_before = backends[2].1.requests();
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.store(false, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::SeqCst), 0, "no request failed");
    assert_eq!(
        backends[2].1.requests(),
        removed_before,
        "the removed endpoint gets no more requests"
    );
    assert!(backends[0].1.requests() > 0 && backends[1].1.requests() > 0);
}

#[tokio::test]
async fn traffic_continues_without_the_controller_and_follows_it_when_it_returns() {
    let backends = backends(&[]).await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.0).collect();
    let mut ctl = TestController::start(&registry("books", 7001, &addrs));
    let proxy = TestProxy::spawn(proxy_config(&ctl, &[])).await;
    assert!(load(proxy.outbound, BOOKS, 30, 3)
        .await
        .iter()
        .all(|s| *s == 200));

    ctl.kill();
    let statuses = load(proxy.outbound, BOOKS, 60, 3).await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "served from the last endpoints: {statuses:?}"
    );

    // While it is down its registry changes: only backend 1 remains.
    ctl.write_registry(&registry("books", 7001, &addrs[1..2]));
    ctl.restart();
    eventually(proxy.outbound, &backends, |delta| {
        delta[0] == 0 && delta[2] == 0 && delta[1] == 6
    })
    .await;
}

#[tokio::test]
async fn a_service_without_endpoints_fails_fast_with_503_and_unknown_names_fall_back() {
    let (backend, seen) = hello_server("direct").await;
    let ctl = TestController::start(&registry("books", 7001, &[]));
    let proxy = TestProxy::spawn(proxy_config(
        &ctl,
        &[("CONDUIT_PROXY_BALANCER_QUEUE_TIMEOUT", "300ms")],
    ))
    .await;

    let started = tokio::time::Instant::now();
    let mut client = http1_client(proxy.outbound).await;
    let req = http::Request::get(BOOKS).body(Full::default()).unwrap();
    let rsp = bounded(client.send_request(req)).await.unwrap();
    assert_eq!(rsp.status(), 503);
    let reason = rsp.headers()["conduit-proxy-error"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("no endpoints for books.demo.svc.cluster.local:7001"),
        "{reason}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "it waited for endpoints first"
    );

    // A name the controller does not know goes where it would without a controller.
    let url = format!("http://localhost:{}/", backend.port());
    let req = http::Request::get(url).body(Full::default()).unwrap();
    let rsp = bounded(client.send_request(req)).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(body_string(rsp).await, "direct");
    assert_eq!(seen.requests(), 1);
}

#[tokio::test]
async fn profile_routes_label_metrics_and_their_timeouts_answer_504() {
    let backend = http_server(|req| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
        http::Response::new(Full::from("ok"))
    })
    .await;
    let mut text = registry("books", 7001, &[backend.0]);
    text.push_str(
        "profiles:\n  - service: books.demo.svc.cluster.local\n    routes:\n      - name: GET /slow\n        condition: {method: GET, pathRegex: /slow}\n        timeout: 200ms\n      - name: GET /books/{id}\n        condition: {method: GET, pathRegex: '/books/\\d+'}\n",
    );
    let ctl = TestController::start(&text);
    let proxy = TestProxy::spawn(proxy_config(&ctl, &[])).await;
    let mut client = http1_client(proxy.outbound).await;
    let url = |path: &str| format!("http://books.demo.svc.cluster.local:7001{path}");

    // The profile arrives shortly after the first request for the service.
    bounded(async {
        loop {
            let req = http::Request::get(url("/books/7"))
                .body(Full::default())
                .unwrap();
            let rsp = client.send_request(req).await.unwrap();
            assert_eq!(rsp.status(), 200);
            body_string(rsp).await;
            if proxy.metrics().await.contains("route=\"GET /books/{id}\"") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    let started = tokio::time::Instant::now();
    let req = http::Request::get(url("/slow"))
        .body(Full::default())
        .unwrap();
    let rsp = bounded(client.send_request(req)).await.unwrap();
    assert_eq!(rsp.status(), 504);
    let reason = rsp.headers()["conduit-proxy-error"].to_str().unwrap();
    assert!(reason.starts_with("timeout"), "{reason}");
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "the route's 200ms applied"
    );

    let metrics = proxy.metrics().await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("response_total{") && l.contains("route=\"GET /slow\""))
        .unwrap_or_else(|| panic!("no route-labelled 504 in:\n{metrics}"));
    assert!(
        line.contains("status_code=\"504\"") && line.contains("classification=\"failure\""),
        "{line}"
    );
}
