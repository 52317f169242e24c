//! Requests an upstream refuses unprocessed are sent again, or refused to the client in turn,
//! never failed as if they might have been processed: HTTP/2 says such a request is safe to
//! retry whatever its method (RFC 9113, section 8.7).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use conduit_app_integration::*;
use http_body_util::Full;
use hyper::body::Incoming;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// nginx ends each HTTP/2 connection after `keepalive_requests` requests (1,000 by default)
/// with one GOAWAY whose last stream is the last it took: the streams a client had opened
/// past it, in flight as the GOAWAY crossed them, were never processed.
#[tokio::test]
async fn http2_streams_an_nginx_upstream_refuses_with_goaway_are_sent_again() {
    let Some(nginx) = Nginx::start(
        true,
        "keepalive_requests 20;",
        "location / { return 200 \"ok\"; }",
        "an HTTP/2 upstream that ends connections after so many requests",
    ) else {
        return;
    };
    let fwd = nginx.addr.to_string();
    let proxy = TestProxy::spawn(config(&[("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", &fwd)])).await;
    let client = h2_client(proxy.inbound).await;
    // 32 streams at a time keep the proxy's upstream connection busy as nginx ends it.
    let mut failed = Vec::new();
    for batch in 0..20 {
        let mut sends = tokio::task::JoinSet::new();
        for i in 0..32 {
            let mut client = client.clone();
            sends.spawn(async move {
                let req = http::Request::get(format!("http://app/{batch}/{i}"))
                    .body(Full::<Bytes>::default())
                    .unwrap();
                let rsp = client.send_request(req).await.unwrap();
                (
                    rsp.status(),
                    rsp.headers().get("conduit-proxy-error").cloned(),
                )
            });
        }
        for (status, reason) in bounded(sends.join_all()).await {
            if status != 200 {
                failed.push((status, reason));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 640 failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
}

/// An HTTP/2 upstream that resets with REFUSED_STREAM the first `refuse` streams of each
/// connection and answers "ok" to the rest; how many streams reached it.
async fn refusing_upstream(refuse: usize) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let streams = Arc::new(AtomicUsize::new(0));
    let seen = streams.clone();
    tokio::spawn(async move {
        while let Ok((io, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut conn = h2::server::handshake(io).await.unwrap();
                let mut on_conn = 0;
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    seen.fetch_add(1, Ordering::SeqCst);
                    on_conn += 1;
                    if on_conn <= refuse {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        continue;
                    }
                    let mut body = respond
                        .send_response(http::Response::new(()), false)
                        .unwrap();
                    body.send_data(Bytes::from_static(b"ok"), true).unwrap();
                }
            });
        }
    });
    (addr, streams)
}

async fn send_via(proxy: &TestProxy, req: http::Request<Full<Bytes>>) -> http::Response<Incoming> {
    let mut client = h2_client(proxy.inbound).await;
    bounded(client.send_request(req)).await.unwrap()
}

#[tokio::test]
async fn a_bodyless_request_reset_with_refused_stream_is_sent_again() {
    let (app, streams) = refusing_upstream(1).await;
    let fwd = app.to_string();
    let proxy = TestProxy::spawn(config(&[("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", &fwd)])).await;
    let req = http::Request::delete("http://app/x")
        .body(Full::default())
        .unwrap();
    let rsp = send_via(&proxy, req).await;
    assert_eq!(rsp.status(), 200, "{:?}", rsp.headers());
    assert_eq!(body_string(rsp).await, "ok");
    assert_eq!(
        streams.load(Ordering::SeqCst),
        2,
        "refused once, then answered"
    );
}

/// Why an HTTP/2 request through `proxy` failed: the stream's reset reason.
async fn reset_via(proxy: &TestProxy, req: http::Request<Full<Bytes>>) -> Option<h2::Reason> {
    let mut client = h2_client(proxy.inbound).await;
    let error = bounded(client.send_request(req)).await.unwrap_err();
    let h2 = std::error::Error::source(&error).and_then(|e| e.downcast_ref::<h2::Error>());
    h2.and_then(h2::Error::reason)
}

#[tokio::test]
async fn a_refused_request_with_a_body_is_refused_to_the_client_in_turn() {
    let (app, streams) = refusing_upstream(1).await;
    let fwd = app.to_string();
    let proxy = TestProxy::spawn(config(&[("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", &fwd)])).await;
    let post = || {
        http::Request::post("http://app/x")
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap()
    };
    // The client is told in the way it can act on: its stream is refused in turn. (An
    // HTTP/1.1 client gets a 502 that says so: see conduit_http::errors.)
    assert_eq!(
        reset_via(&proxy, post()).await,
        Some(h2::Reason::REFUSED_STREAM)
    );
    assert_eq!(
        streams.load(Ordering::SeqCst),
        1,
        "a body is not sent twice"
    );
}

#[tokio::test]
async fn an_upstream_that_refuses_every_stream_is_tried_three_times() {
    let (app, streams) = refusing_upstream(usize::MAX).await;
    let fwd = app.to_string();
    let proxy = TestProxy::spawn(config(&[("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", &fwd)])).await;
    let req = http::Request::get("http://app/x")
        .body(Full::default())
        .unwrap();
    assert_eq!(
        reset_via(&proxy, req).await,
        Some(h2::Reason::REFUSED_STREAM)
    );
    assert_eq!(streams.load(Ordering::SeqCst), 3);
}
