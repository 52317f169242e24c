//! `conduit-bench-tap layer [REQUESTS]`: the tap layer's own cost per request, over a
//! service that answers at once (no sockets): without the layer, with the layer and no tap
//! open, with a tap matching nothing, and one
//! matching everything (at the default rate limit). Prints nanoseconds per request for
//! each; the proxy's whole per-request cost, from the proxy benchmark, puts them in scale.

use conduit_api::tap::tap_event::Direction;
use conduit_tap::{Match, Peers, TapLayer, Taps};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

/// Answers every request with an empty 200 and one data frame.
#[derive(Clone)]
struct Answer;

impl Service<http::Request<()>> for Answer {
    type Response = http::Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        std::future::ready(Ok(http::Response::new("hello".to_string())))
    }
}

fn peers() -> Peers {
    Peers {
        direction: Direction::Inbound,
        source: "10.0.0.1:40000".parse().expect("address"),
        source_identity: Some(Arc::from(
            "web.demo.serviceaccount.identity.conduit.cluster.local",
        )),
        source_labels: None,
        destination: "10.0.0.2:7001".parse().expect("address"),
        destination_identity: None,
        destination_labels: None,
        tls: true,
    }
}

async fn run(taps: Option<&Taps>, requests: u64) -> f64 {
    match taps {
        Some(taps) => drive(TapLayer::new(taps.clone(), peers()).layer(Answer), requests),
        None => drive(Answer, requests),
    }
}

fn drive<S, B>(mut svc: S, requests: u64) -> f64
where
    S: Service<http::Request<()>, Response = http::Response<B>>,
    B: http_body::Body,
{
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    let start = Instant::now();
    for i in 0..requests {
        let req = http::Request::get(format!(
            "http://books.demo.svc.cluster.local:7001/books/{}",
            i % 100
        ))
        .body(())
        .expect("request");
        let fut = svc.call(req);
        let mut fut = std::pin::pin!(fut);
        let Poll::Ready(Ok(rsp)) = fut.as_mut().poll(&mut cx) else {
            panic!("the service answers at once");
        };
        let mut body = std::pin::pin!(rsp.into_body());
        while let Poll::Ready(Some(_)) = http_body::Body::poll_frame(body.as_mut(), &mut cx) {}
    }
    start.elapsed().as_nanos() as f64 / requests as f64
}

pub fn main(requests: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for round in 1..=3 {
            let bare = run(None, requests).await;
            let none = Taps::new();
            let base = run(Some(&none), requests).await;
            let nothing = Taps::new();
            let _sub = nothing.subscribe(
                Match::from_api(Some(conduit_api::tap::Match { r#match: None })).expect("filter"),
                0,
                0.0,
            );
            let t_nothing = run(Some(&nothing), requests).await;
            let everything = Taps::new();
            let mut sub = everything.subscribe(Match::everything(), 0, 0.0);
            let reader = tokio::spawn(async move {
                let mut n = 0u64;
                while sub.recv().await.is_some() {
                    n += 1;
                }
                n
            });
            let t_everything = run(Some(&everything), requests).await;
            drop(everything);
            reader.abort();
            println!(
                "BENCH round {round} ns/request: without the layer {bare:.0}, no tap {base:.0}, \
                 tap matching nothing {t_nothing:.0}, tap matching everything {t_everything:.0}"
            );
        }
    });
}
