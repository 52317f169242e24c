//! Tap through real proxies: the tap server answers the controller's identity over mTLS, and
//! its events describe the requests the proxies carry, on both sides of a meshed pair.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use conduit_api::stats::proxy_stats_client::ProxyStatsClient;
use conduit_api::stats::GetProxyStats;
use conduit_api::tap::tap_client::TapClient;
use conduit_api::tap::tap_event::{Direction, Event};
use conduit_api::tap::{r#match, ObserveRequest, TapEvent};
use conduit_app_integration::*;
use conduit_identity::{Credentials, Name};
use std::sync::Arc;
use std::time::Duration;

const BOOKS: &str = "books.demo.svc.cluster.local:7001";

/// A tap client of `proxy` (whose identity is `sa`'s), with `creds`.
fn tap_client(
    proxy: &TestProxy,
    sa: &str,
    creds: Arc<Credentials>,
) -> TapClient<tonic::transport::Channel> {
    let tls = conduit_tls::ClientTls::new(creds).unwrap();
    let name = Name::parse(&identity_name(sa)).unwrap();
    let addr = proxy
        .tap
        .expect("a proxy with an identity serves tap")
        .to_string();
    TapClient::new(conduit_discovery::channel(&addr, Some((tls, name))).unwrap())
}

fn path_prefix(prefix: &str) -> Option<conduit_api::tap::Match> {
    Some(conduit_api::tap::Match {
        r#match: Some(r#match::Match::Http(r#match::Http {
            r#match: Some(r#match::http::Match::PathPrefix(prefix.into())),
        })),
    })
}

async fn next(events: &mut tonic::Streaming<TapEvent>) -> TapEvent {
    bounded(events.message()).await.unwrap().expect("an event")
}

async fn get_books(web: &TestProxy, path: &str) -> http::Response<hyper::body::Incoming> {
    get_via(web.outbound, BOOKS, path).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taps_show_meshed_requests_on_both_sides() {
    let (app, _) = hello_server("a book").await;
    let ctl = TestController::start_with_identity(
        &registry("books", 7001, &[]),
        Duration::from_secs(3600),
    );
    let app = app.to_string();
    let books = ctl
        .meshed_proxy(
            "books",
            &[
                ("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", &app),
                (
                    "CONDUIT_PROXY_WORKLOAD_LABELS",
                    "namespace=demo,workload=books",
                ),
            ],
        )
        .await;
    // Discovery labels books' endpoint, as the Kubernetes source does with its pod's owner.
    ctl.write_registry(
        &meshed_registry("books", 7001, books.inbound, &identity_name("books")).replace(
            "            identity:",
            "            labels: {workload: books, pod: books-0}\n            identity:",
        ),
    );
    let web = ctl
        .meshed_proxy(
            "web",
            &[(
                "CONDUIT_PROXY_WORKLOAD_LABELS",
                "namespace=demo,workload=web",
            )],
        )
        .await;
    let creds = ctl.controller_credentials().await;

    let observe = |limit| ObserveRequest {
        limit,
        max_rps: 0.0,
        r#match: path_prefix("/books"),
    };
    let mut inbound = tap_client(&books, "books", creds.clone())
        .observe(observe(1))
        .await
        .unwrap()
        .into_inner();
    let mut outbound = tap_client(&web, "web", creds.clone())
        .observe(observe(1))
        .await
        .unwrap()
        .into_inner();
    // `--to workload/books`: on the outbound side, known once books' endpoint answers.
    let to_books = ObserveRequest {
        limit: 1,
        max_rps: 0.0,
        r#match: Some(conduit_api::tap::Match {
            r#match: Some(r#match::Match::DestinationLabel(r#match::Label {
                key: "workload".into(),
                value: "books".into(),
            })),
        }),
    };
    let mut to_books = tap_client(&web, "web", creds)
        .observe(to_books)
        .await
        .unwrap()
        .into_inner();
    // The tap is open once the server has answered; a request not matching comes first.
    assert_eq!(get_books(&web, "/authors/1").await.status(), 200);
    let rsp = get_books(&web, "/books/7").await;
    assert_eq!(body_string(rsp).await, "a book");

    // Inbound, at books: the client is web's proxy, over mTLS.
    let init = next(&mut inbound).await;
    assert_eq!(init.proxy_direction, Direction::Inbound as i32);
    assert!(init.tls);
    let src = init.source.clone().unwrap();
    assert_eq!(src.identity, identity_name("web"));
    let dst = init.destination.clone().unwrap();
    assert_eq!(dst.identity, identity_name("books"));
    assert_eq!(dst.labels.get("workload").unwrap(), "books");
    let Some(Event::RequestInit(req)) = init.event else {
        panic!("{init:?}")
    };
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("GET", "/books/7")
    );
    assert_eq!(req.authority, BOOKS);
    let rsp = next(&mut inbound).await;
    let Some(Event::ResponseInit(head)) = rsp.event else {
        panic!("{rsp:?}")
    };
    assert_eq!((head.id, head.http_status), (req.id, 200));
    let end = next(&mut inbound).await;
    let Some(Event::ResponseEnd(end)) = end.event else {
        panic!("{end:?}")
    };
    assert_eq!((end.id, end.response_bytes), (req.id, 6));
    assert!(end.end.is_none());
    // The limit was one request: the stream ends.
    assert!(bounded(inbound.message()).await.unwrap().is_none());

    // Outbound, at web: the source is the application, the destination identity is known
    // once the response comes from books' proxy.
    let init = next(&mut outbound).await;
    assert_eq!(init.proxy_direction, Direction::Outbound as i32);
    assert_eq!(init.source.unwrap().labels.get("workload").unwrap(), "web");
    let rsp = next(&mut outbound).await;
    assert!(rsp.tls);
    let dst = rsp.destination.unwrap();
    assert_eq!(dst.identity, identity_name("books"));
    // The endpoint the balancer picked, not the address the application dialled.
    assert_eq!(dst.addr, books.inbound.to_string());
    let end = next(&mut outbound).await;
    assert!(matches!(end.event, Some(Event::ResponseEnd(_))));

    // The destination-label tap took the first request to books (`/authors/1`), its init
    // sent late, once the labels were known, and in order.
    let init = next(&mut to_books).await;
    let Some(Event::RequestInit(req)) = &init.event else {
        panic!("{init:?}")
    };
    assert_eq!(req.path, "/authors/1");
    let rsp = next(&mut to_books).await;
    let dst = rsp.destination.unwrap();
    assert_eq!(dst.labels.get("pod").unwrap(), "books-0");
    assert!(matches!(rsp.event, Some(Event::ResponseInit(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_controller_may_tap() {
    let (app, _) = hello_server("a book").await;
    let ctl = TestController::start_with_identity(
        &registry("books", 7001, &[]),
        Duration::from_secs(3600),
    );
    let app = app.to_string();
    let books = ctl
        .meshed_proxy("books", &[("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", &app)])
        .await;

    // Another workload's identity: refused, with the reason.
    let web = ctl.credentials("web").await;
    let err = tap_client(&books, "books", web)
        .observe(ObserveRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains(&identity_name("web")), "{err:?}");
    // The proxy's stats, on the same port, likewise.
    let stats_client = |creds| {
        let tls = conduit_tls::ClientTls::new(creds).unwrap();
        let name = Name::parse(&identity_name("books")).unwrap();
        ProxyStatsClient::new(
            conduit_discovery::channel(&books.tap.unwrap().to_string(), Some((tls, name))).unwrap(),
        )
    };
    let err = stats_client(ctl.credentials("web").await)
        .get(GetProxyStats {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    // The controller gets them: one request counted inbound, with its latency.
    assert_eq!(
        get_via(books.inbound, "books:7001", "/").await.status(),
        200
    );
    let snapshot = stats_client(ctl.controller_credentials().await)
        .get(GetProxyStats {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(snapshot.identity, identity_name("books"));
    let inbound: Vec<_> = snapshot
        .responses
        .iter()
        .filter(|s| s.direction == conduit_api::stats::Direction::Inbound as i32)
        .collect();
    assert_eq!(inbound.len(), 1, "{snapshot:?}");
    assert_eq!((inbound[0].count, inbound[0].status), (1, 200));
    assert_eq!(inbound[0].latency.iter().map(|b| b.count).sum::<u64>(), 1);

    // Plaintext: the tap port speaks only TLS.
    let plain = tonic::transport::Channel::from_shared(format!("http://{}", books.tap.unwrap()))
        .unwrap()
        .connect_lazy();
    let err = bounded(TapClient::new(plain).observe(ObserveRequest::default()))
        .await
        .unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);

    // A bad filter: refused with the reason.
    let creds = ctl.controller_credentials().await;
    let err = tap_client(&books, "books", creds)
        .observe(ObserveRequest {
            r#match: path_prefix("books"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    // An open tap does not hold up the proxy's shutdown: its stream ends at once.
    let mut open = tap_client(&books, "books", ctl.controller_credentials().await)
        .observe(ObserveRequest::default())
        .await
        .unwrap()
        .into_inner();
    let started = std::time::Instant::now();
    assert!(books.shutdown().await, "drained within the grace period");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(!matches!(bounded(open.message()).await, Ok(Some(_))));
}

#[tokio::test]
async fn a_proxy_without_identity_serves_no_tap() {
    let proxy = TestProxy::spawn(config(&[])).await;
    assert!(proxy.tap.is_none());
    assert!(proxy.shutdown().await);
}
