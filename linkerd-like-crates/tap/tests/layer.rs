//! The tap layer over a real service: which requests are tapped, the events they give, and
//! the limits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use conduit_api::tap::tap_event::{self, Direction, Event};
use conduit_api::tap::TapEvent;
use conduit_metrics::RouteLabel;
use conduit_tap::{Labels, Match, Peers, TapLayer, Taps};
use http_body_util::{BodyExt, Full, StreamBody};
use std::convert::Infallible;
use std::sync::Arc;
use tower::{Layer, Service, ServiceExt};

fn peers() -> Peers {
    Peers {
        direction: Direction::Inbound,
        source: "10.0.0.1:40000".parse().unwrap(),
        source_identity: Some(Arc::from(
            "web.demo.serviceaccount.identity.conduit.cluster.local",
        )),
        source_labels: None,
        destination: "10.0.0.2:7001".parse().unwrap(),
        destination_identity: None,
        destination_labels: Some(Arc::new(Labels::from([(
            "deployment".to_string(),
            "books".to_string(),
        )]))),
        tls: true,
    }
}

type Rsp = http::Response<Full<Bytes>>;

/// A back-end answering `status` with a body of `len` bytes, and the route `route`.
fn backend(
    status: u16,
    len: usize,
    route: Option<&'static str>,
) -> impl Service<http::Request<()>, Response = Rsp, Error = Infallible, Future: Send> + Clone {
    tower::service_fn(move |_req: http::Request<()>| async move {
        let mut rsp = http::Response::new(Full::new(Bytes::from(vec![b'x'; len])));
        *rsp.status_mut() = http::StatusCode::from_u16(status).unwrap();
        if let Some(r) = route {
            rsp.extensions_mut().insert(RouteLabel(Arc::from(r)));
        }
        Ok::<_, Infallible>(rsp)
    })
}

fn get(path: &str) -> http::Request<()> {
    http::Request::get(format!("http://books.demo.svc.cluster.local:7001{path}"))
        .body(())
        .unwrap()
}

async fn call<S>(svc: &mut S, req: http::Request<()>) -> Bytes
where
    S: Service<http::Request<()>, Error = Infallible>,
    S::Response: Into<http::Response<conduit_tap::TapBody<Full<Bytes>>>>,
{
    let rsp: http::Response<_> = svc.ready().await.unwrap().call(req).await.unwrap().into();
    rsp.into_body().collect().await.unwrap().to_bytes()
}

fn filter(m: conduit_api::tap::r#match::Match) -> Match {
    Match::from_api(Some(conduit_api::tap::Match { r#match: Some(m) })).unwrap()
}

fn http_match(m: conduit_api::tap::r#match::http::Match) -> Match {
    filter(conduit_api::tap::r#match::Match::Http(
        conduit_api::tap::r#match::Http { r#match: Some(m) },
    ))
}

/// The events sent so far (waiting up to 50 ms for each).
async fn drain(sub: &mut conduit_tap::Subscription) -> Vec<TapEvent> {
    let mut out = Vec::new();
    while let Ok(Some(e)) =
        tokio::time::timeout(std::time::Duration::from_millis(50), sub.recv()).await
    {
        out.push(e);
    }
    out
}

#[tokio::test]
async fn without_taps_requests_pass_untouched() {
    let taps = Taps::new();
    let mut svc = TapLayer::new(taps.clone(), peers()).layer(backend(200, 5, None));
    assert_eq!(call(&mut svc, get("/books")).await.len(), 5);
}

#[tokio::test]
async fn a_matching_request_gives_init_response_and_end_events() {
    let taps = Taps::new();
    let mut sub = taps.subscribe(Match::everything(), 0, 0.0);
    let mut svc = TapLayer::new(taps.clone(), peers()).layer(backend(201, 1024, None));
    call(&mut svc, get("/books/7?x=1")).await;
    let events = drain(&mut sub).await;
    assert_eq!(events.len(), 3, "{events:#?}");
    let Some(Event::RequestInit(init)) = &events[0].event else {
        panic!("{events:?}")
    };
    assert_eq!(init.method, "GET");
    assert_eq!(init.authority, "books.demo.svc.cluster.local:7001");
    assert_eq!(init.path, "/books/7");
    assert_eq!(init.scheme, "http");
    let e = &events[0];
    assert!(e.tls);
    assert_eq!(e.proxy_direction, Direction::Inbound as i32);
    let src = e.source.as_ref().unwrap();
    assert_eq!(src.addr, "10.0.0.1:40000");
    assert_eq!(
        src.identity,
        "web.demo.serviceaccount.identity.conduit.cluster.local"
    );
    let dst = e.destination.as_ref().unwrap();
    assert_eq!(
        dst.labels.get("deployment").map(String::as_str),
        Some("books")
    );
    let Some(Event::ResponseInit(rsp)) = &events[1].event else {
        panic!("{events:?}")
    };
    assert_eq!((rsp.id, rsp.http_status), (init.id, 201));
    let Some(Event::ResponseEnd(end)) = &events[2].event else {
        panic!("{events:?}")
    };
    assert_eq!(
        (end.id, end.response_bytes, end.end.clone()),
        (init.id, 1024, None)
    );
    assert!(end.since_request_init.is_some() && end.since_response_init.is_some());
}

#[tokio::test]
async fn filters_choose_the_requests() {
    use conduit_api::tap::r#match::http::Match as H;
    let taps = Taps::new();
    let mut books = taps.subscribe(http_match(H::PathPrefix("/books".into())), 0, 0.0);
    let mut posts = taps.subscribe(http_match(H::Method("POST".into())), 0, 0.0);
    let mut svc = TapLayer::new(taps.clone(), peers()).layer(backend(200, 1, None));
    call(&mut svc, get("/books/1")).await;
    call(&mut svc, get("/authors/1")).await;
    call(&mut svc, get("/books/2")).await;
    let inits = |events: Vec<TapEvent>| -> Vec<String> {
        events
            .into_iter()
            .filter_map(|e| match e.event {
                Some(Event::RequestInit(i)) => Some(i.path),
                _ => None,
            })
            .collect()
    };
    assert_eq!(inits(drain(&mut books).await), ["/books/1", "/books/2"]);
    assert!(drain(&mut posts).await.is_empty());
}

#[tokio::test]
async fn route_filters_decide_when_the_route_is_known() {
    use conduit_api::tap::r#match::http::Match as H;
    let taps = Taps::new();
    let mut sub = taps.subscribe(http_match(H::Route("GET /books/{id}".into())), 0, 0.0);
    let mut routed =
        TapLayer::new(taps.clone(), peers()).layer(backend(200, 3, Some("GET /books/{id}")));
    let mut other =
        TapLayer::new(taps.clone(), peers()).layer(backend(200, 3, Some("GET /authors")));
    let mut unrouted = TapLayer::new(taps.clone(), peers()).layer(backend(200, 3, None));
    call(&mut routed, get("/books/1")).await;
    call(&mut other, get("/authors")).await;
    call(&mut unrouted, get("/x")).await;
    let events = drain(&mut sub).await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e.event {
            Some(Event::RequestInit(_)) => "init",
            Some(Event::ResponseInit(_)) => "rsp",
            Some(Event::ResponseEnd(_)) => "end",
            None => "none",
        })
        .collect();
    assert_eq!(kinds, ["init", "rsp", "end"]);
    assert!(events
        .iter()
        .all(|e| e.route == "GET /books/{id}" || matches!(e.event, Some(Event::RequestInit(_)))));
}

#[tokio::test]
async fn grpc_status_comes_from_the_trailers() {
    let taps = Taps::new();
    let mut sub = taps.subscribe(Match::everything(), 0, 0.0);
    let svc = tower::service_fn(|_req: http::Request<()>| async {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("14"));
        let frames = vec![
            Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(b"abcd"))),
            Ok(http_body::Frame::trailers(trailers)),
        ];
        Ok::<_, Infallible>(http::Response::new(StreamBody::new(futures_stream(frames))))
    });
    let mut svc = TapLayer::new(taps.clone(), peers()).layer(svc);
    let rsp = svc
        .ready()
        .await
        .unwrap()
        .call(get("/svc/Method"))
        .await
        .unwrap();
    rsp.into_body().collect().await.unwrap();
    let end = drain(&mut sub).await.pop().unwrap();
    let Some(Event::ResponseEnd(end)) = end.event else {
        panic!("{end:?}")
    };
    assert_eq!(end.response_bytes, 4);
    assert_eq!(end.end, Some(tap_event::response_end::End::GrpcStatus(14)));
}

fn futures_stream<T: Send + 'static>(items: Vec<T>) -> impl tokio_stream::Stream<Item = T> {
    tokio_stream::iter(items)
}

#[tokio::test]
async fn a_body_cut_short_ends_with_an_error() {
    let taps = Taps::new();
    let mut sub = taps.subscribe(Match::everything(), 0, 0.0);
    let mut svc = TapLayer::new(taps.clone(), peers()).layer(backend(200, 10, None));
    let rsp = svc.ready().await.unwrap().call(get("/")).await.unwrap();
    drop(rsp);
    let Some(Event::ResponseEnd(end)) = drain(&mut sub).await.pop().unwrap().event else {
        panic!()
    };
    assert!(matches!(
        end.end,
        Some(tap_event::response_end::End::Error(_))
    ));
}

#[tokio::test]
async fn the_stream_ends_after_the_limit_and_its_last_request() {
    let taps = Taps::new();
    let mut sub = taps.subscribe(Match::everything(), 2, 0.0);
    let mut svc = TapLayer::new(taps.clone(), peers()).layer(backend(200, 1, None));
    for _ in 0..3 {
        call(&mut svc, get("/")).await;
    }
    let mut n = 0;
    while let Some(_e) = sub.recv().await {
        n += 1;
    }
    assert_eq!(n, 6, "two requests, three events each, then the end");
    assert!(!taps.is_active());
}

#[tokio::test(start_paused = true)]
async fn a_slow_reader_loses_whole_requests_never_halves() {
    let taps = Taps::new();
    let mut sub = taps.subscribe(Match::everything(), 0, 0.0);
    let mut svc = TapLayer::new(taps.clone(), peers()).layer(backend(200, 1, None));
    // 400 requests at the rate limit, three events each, with nobody reading: more than
    // the buffer holds.
    let requests = 400;
    for _ in 0..requests {
        call(&mut svc, get("/")).await;
        tokio::time::advance(std::time::Duration::from_secs_f64(
            1.0 / conduit_tap::MAX_RPS,
        ))
        .await;
    }
    let events = drain(&mut sub).await;
    assert_eq!(
        events.len(),
        conduit_tap::EVENT_BUFFER,
        "the rest were dropped"
    );
    let mut inits = std::collections::HashSet::new();
    for e in &events {
        match &e.event {
            Some(Event::RequestInit(i)) => {
                inits.insert(i.id);
            }
            Some(Event::ResponseInit(r)) => assert!(inits.contains(&r.id)),
            Some(Event::ResponseEnd(r)) => assert!(inits.contains(&r.id)),
            None => panic!(),
        }
    }
    assert!(inits.len() < requests);
}
