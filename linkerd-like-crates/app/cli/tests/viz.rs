//! The controller's Stats and TapByResource APIs through real meshed proxies, and the CLI's
//! tables and JSON of them: known traffic in, exact counts and percentiles out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use conduit_api::stats::Golden;
use conduit_api::tap::tap_event::Event;
use conduit_api::tap::TapEvent;
use conduit_app_cli::viz::{self, stat::StatArgs, tap::TapArgs, Output};
use conduit_app_integration::*;
use http_body_util::Full;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// `n` GETs of `path(i)` through web's proxy, `concurrency` at a time.
async fn traffic(web: SocketAddr, n: usize, concurrency: usize, path: fn(usize) -> String) {
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        tasks.spawn(async move {
            let mut client = http1_client(web).await;
            for i in (worker..n).step_by(concurrency) {
                let req = http::Request::get(format!("http://{BOOKS}{}", path(i)))
                    .header("host", BOOKS)
                    .body(Full::<bytes::Bytes>::default())
                    .unwrap();
                let rsp = bounded(client.send_request(req)).await.unwrap();
                body_string(rsp).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// 600 requests of 10 ms, 300 of 100 ms, 100 of 300 ms answered 500: groups far enough
/// apart that a loaded machine's scheduling delays cannot move a percentile into the next.
fn mix(i: usize) -> String {
    match i % 10 {
        0..=5 => "/ms/10".into(),
        6..=8 => "/ms/100".into(),
        _ => "/fail/300".into(),
    }
}

/// At least `at_least_ms` (a sleep is never short), within the histograms' 1% and the
/// scheduling slack of a busy two-core machine (short of the next group).
fn assert_latency(us: u64, at_least_ms: u64, what: &str) {
    let low = at_least_ms * 1000;
    let high = low + low / 100 + 80_000;
    assert!(
        (low..=high).contains(&us),
        "{what}: {us}µs, expected {low}..={high}µs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_routes_and_edges_report_known_traffic_exactly() {
    let mesh = mesh().await;
    // A first request, counted, proves the windows start before it: every later count is
    // then exact.
    let warm = get_via(mesh.web.outbound, BOOKS, "/ms/10").await;
    assert_eq!(warm.status(), 200);
    body_string(warm).await;
    mesh.until_books_counted(1).await;

    let started = Instant::now();
    traffic(mesh.web.outbound, 1000, 20, mix).await;
    let traffic_secs = started.elapsed().as_secs_f64();
    mesh.until_books_counted(1001).await;

    // The server's view: 1,001 requests, 901 successes, percentiles in their groups.
    let books = mesh
        .golden(res("demo", "deploy", "books"), None, None, "books")
        .await;
    assert_eq!((books.requests, books.successes), (1001, 901));
    assert_latency(books.p50_us, 10, "p50");
    assert_latency(books.p95_us, 300, "p95");
    assert_latency(books.p99_us, 300, "p99");
    assert!(
        books.rps > 0.0 && books.rps <= 1001.0 / traffic_secs,
        "{books:?}"
    );

    // The clients' views agree on the counts.
    for (resource, from, to, name) in [
        (res("demo", "svc", "books"), None, None, "books"),
        (
            res("demo", "deploy", "web"),
            None,
            Some(res("demo", "deploy", "books")),
            "web",
        ),
        (
            res("demo", "deploy", "books"),
            Some(res("demo", "deploy", "web")),
            None,
            "books",
        ),
        (res("", "ns", "demo"), None, None, "demo"),
    ] {
        let what = format!("{} {name} from {from:?} to {to:?}", resource.kind);
        let g = mesh.golden(resource, from, to, name).await;
        assert_eq!((g.requests, g.successes), (1001, 901), "{what}");
        assert_latency(g.p50_us, 10, &what);
    }
    // web's own inbound saw nothing.
    let web = mesh
        .golden(res("demo", "deploy", "web"), None, None, "web")
        .await;
    assert_eq!(web.requests, 0);

    // The table and the JSON.
    let rsp = mesh.stat(res("demo", "deploy", ""), None, None).await;
    let table = viz::stat::render(&rsp, Output::Table, false);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].ends_with("TCP_CONN"),
        "{table}"
    );
    let books_line = lines
        .iter()
        .find(|l| l.starts_with("deploy/books"))
        .unwrap();
    let cells: Vec<&str> = books_line.split_whitespace().collect();
    assert_eq!(&cells[1..3], ["1/1", "90.01%"], "{table}");
    assert!(
        cells[7].parse::<u64>().unwrap() >= 1,
        "web's connection to books is open: {table}"
    );
    let web_line = lines.iter().find(|l| l.starts_with("deploy/web")).unwrap();
    assert_eq!(web_line.split_whitespace().nth(2), Some("-"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&viz::stat::render(&rsp, Output::Json, false)).unwrap();
    let row = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "books")
        .unwrap();
    assert_eq!(row["requests"], 1001);
    assert_eq!(row["successes"], 901);
    assert!((row["success_rate"].as_f64().unwrap() - 901.0 / 1001.0).abs() < 1e-9);
    let p50 = row["latency_ms_p50"].as_f64().unwrap();
    assert!((10.0..90.0).contains(&p50), "{row}");

    // Routes: the profile's route, and the rest.
    let routes = mesh.books_routes().await;
    let by_route: HashMap<&str, &Golden> = routes
        .rows
        .iter()
        .map(|r| (r.route.as_str(), r.golden.as_ref().unwrap()))
        .collect();
    assert_eq!(routes.rows.len(), 3, "{routes:?}");
    assert_eq!(routes.rows[1].route, "GET /missing");
    assert_eq!(routes.rows[0].route, "GET /ms/{n}");
    let (ms, other) = (by_route["GET /ms/{n}"], by_route["[DEFAULT]"]);
    // The warm-up request may have gone before web's proxy had the profile.
    assert_eq!(ms.requests + other.requests, 1001);
    assert!(ms.requests >= 900, "{ms:?}");
    assert_eq!(ms.successes, ms.requests);
    assert_eq!(other.successes, other.requests - 100);
    assert_latency(other.p50_us, 300, "[DEFAULT] p50");
    let table = viz::routes::render(&routes, "svc/books", Output::Table);
    assert!(
        table.lines().nth(3).unwrap().starts_with("[DEFAULT]"),
        "{table}"
    );

    // Edges: web to books, over mTLS, with both identities.
    let edges = viz::edges::query(&mesh.addr(), "deploy", "demo", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(edges.rows.len(), 1, "{edges:?}");
    let e = &edges.rows[0];
    assert_eq!(e.src.as_ref().unwrap().name, "web");
    assert_eq!(e.dst.as_ref().unwrap().name, "books");
    assert!(e.secured);
    assert_eq!(e.client_id, identity_name("web"));
    assert_eq!(e.server_id, identity_name("books"));
    assert_eq!(e.golden.as_ref().unwrap().requests, 1001);
    let table = viz::edges::render(&edges, Output::Table);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..7],
        [
            "deploy/web",
            "deploy/books",
            "demo",
            "demo",
            "√",
            "web.demo",
            "books.demo"
        ],
        "{table}"
    );

    // Bad queries say why.
    let err = viz::stat::query(
        &mesh.addr(),
        &StatArgs {
            resource: res("demo", "deploy", ""),
            from: Some(res("demo", "deploy", "web")),
            to: Some(res("demo", "deploy", "books")),
            window: Duration::from_secs(60),
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("not both"), "{err}");

    // The profile's response class: ten 404s on /missing are failures to web's proxy, which
    // has the profile, and successes to books' (the default class).
    traffic(mesh.web.outbound, 10, 2, |_| "/missing".into()).await;
    mesh.until_books_counted(1011).await;
    let books = mesh
        .golden(res("demo", "deploy", "books"), None, None, "books")
        .await;
    assert_eq!((books.requests, books.successes), (1011, 911));
    let svc = mesh
        .golden(res("demo", "svc", "books"), None, None, "books")
        .await;
    assert_eq!((svc.requests, svc.successes), (1011, 901));
    let routes = mesh.books_routes().await;
    let missing = routes
        .rows
        .iter()
        .find(|r| r.route == "GET /missing")
        .unwrap();
    let g = missing.golden.unwrap();
    assert_eq!((g.requests, g.successes), (10, 0));
}

async fn events_until_end(stream: &mut tonic::Streaming<TapEvent>) -> Vec<TapEvent> {
    let mut all = Vec::new();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("the tap ends by its limit")
        .unwrap()
    {
        all.push(e);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_by_resource_merges_filters_and_limits() {
    let mesh = mesh().await;
    let traffic = keep_requesting(mesh.web.outbound, "/ms/1");
    let other = keep_requesting(mesh.web.outbound, "/fail/1");

    // books' proxies, only /ms, two requests: six events, in order per request.
    let args = TapArgs {
        target: res("demo", "deploy", "books"),
        path: Some("/ms".into()),
        limit: 2,
        ..Default::default()
    };
    let mut stream = viz::tap::watch(&mesh.addr(), &args).await.unwrap();
    let events = events_until_end(&mut stream).await;
    assert_eq!(events.len(), 6, "{events:#?}");
    let mut kinds: HashMap<u64, Vec<&str>> = HashMap::new();
    for e in &events {
        assert_eq!(e.proxy, "demo/books-0");
        let (id, kind) = match e.event.as_ref().unwrap() {
            Event::RequestInit(r) => {
                assert!(r.path.starts_with("/ms"));
                (r.id, "req")
            }
            Event::ResponseInit(r) => {
                assert_eq!(r.http_status, 200);
                (r.id, "rsp")
            }
            Event::ResponseEnd(r) => (r.id, "end"),
        };
        kinds.entry(id).or_default().push(kind);
    }
    assert_eq!(kinds.len(), 2);
    assert!(
        kinds.values().all(|k| *k == ["req", "rsp", "end"]),
        "{kinds:?}"
    );
    let line = viz::tap::render(&events[0], Output::Table);
    assert!(
        line.starts_with("req id=books-0:")
            && line.contains(" proxy=in ")
            && line.contains(" tls=true :method=GET"),
        "{line}"
    );
    let rsp = events
        .iter()
        .find(|e| matches!(e.event, Some(Event::ResponseInit(_))))
        .unwrap();
    let line = viz::tap::render(rsp, Output::Table);
    assert!(
        line.starts_with("rsp id=books-0:") && line.contains(":status=200 latency="),
        "{line}"
    );

    // web's proxies, to books only: the outbound side, with books' labels.
    let args = TapArgs {
        target: res("demo", "deploy", "web"),
        to: Some(res("demo", "deploy", "books")),
        method: Some("GET".into()),
        limit: 1,
        ..Default::default()
    };
    let mut stream = viz::tap::watch(&mesh.addr(), &args).await.unwrap();
    let events = events_until_end(&mut stream).await;
    assert_eq!(events.len(), 3, "{events:#?}");
    let end = viz::tap::render(&events[2], Output::Wide);
    assert!(
        end.starts_with("end id=web-0:")
            && end.contains(" proxy=out ")
            && end.contains("dst_res=deploy/books"),
        "{end}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&viz::tap::render(&events[2], Output::Json)).unwrap();
    assert_eq!(json["event"]["type"], "response_end");
    assert_eq!(json["proxy"], "demo/web-0");

    // top: the most requested paths, from the same tap.
    let args = TapArgs {
        target: res("demo", "deploy", "books"),
        limit: 10,
        ..Default::default()
    };
    let mut screen = Vec::new();
    let top = viz::top::run(
        &mesh.addr(),
        &args,
        Duration::from_millis(100),
        &mut screen,
        std::future::pending(),
    )
    .await
    .unwrap();
    let rows = top.rows();
    assert_eq!(rows.iter().map(|r| r.1.count).sum::<u64>(), 10, "{rows:?}");
    for ((_, path), row) in &rows {
        let expected = if path.starts_with("/fail") {
            0
        } else {
            row.count
        };
        assert_eq!(row.successes, expected, "{path}: {row:?}");
    }
    assert!(String::from_utf8_lossy(&screen).contains("SUCCESS_RATE"));
    drop((traffic, other));

    // A resource without proxies, and a bad filter, are refused with their reasons.
    let missing = TapArgs {
        target: res("demo", "deploy", "nobody"),
        ..Default::default()
    };
    let err = viz::tap::watch(&mesh.addr(), &missing).await.unwrap_err();
    assert!(err.to_string().contains("no meshed proxy"), "{err}");
    let bad = TapArgs {
        target: res("demo", "replicaset", "x"),
        ..Default::default()
    };
    let err = viz::tap::watch(&mesh.addr(), &bad).await.unwrap_err();
    assert!(err.to_string().contains("unknown kind"), "{err}");
}
