//! The controller's Stats and TapByResource APIs through real meshed proxies, and the CLI's
//! tables and JSON of them: known traffic in, exact counts and percentiles out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use conduit_api::stats::{Golden, StatResponse};
use conduit_api::tap::tap_event::Event;
use conduit_api::tap::{Resource, TapEvent};
use conduit_app_cli::viz::{self, stat::StatArgs, tap::TapArgs, Output};
use conduit_app_integration::*;
use http_body_util::Full;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const BOOKS: &str = "books.demo.svc.cluster.local:7001";

/// An app that sleeps `N` ms for `/ms/N` (then 200) and `/fail/N` (then 500).
async fn sleepy_app() -> SocketAddr {
    http_server(|req| async move {
        let path = req.uri().path().to_string();
        let (status, ms) = match path.rsplit_once('/') {
            Some(("/ms", n)) => (200, n.parse().unwrap_or(0)),
            Some(("/fail", n)) => (500, n.parse().unwrap_or(0)),
            _ => (404, 0),
        };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        http::Response::builder()
            .status(status)
            .body(Full::from("x"))
            .unwrap()
    })
    .await
    .0
}

/// A controller, books' proxy in front of the sleepy app, and web's proxy as the client.
struct Mesh {
    ctl: TestController,
    web: TestProxy,
    _books: TestProxy,
}

fn endpoint(proxy: &TestProxy, name: &str) -> String {
    format!(
        "          - address: {}\n            identity: {}\n            labels: {{workload: {name}, pod: {name}-0}}\n            tapPort: {}\n",
        proxy.inbound,
        identity_name(name),
        proxy.tap.unwrap().port()
    )
}

async fn mesh() -> Mesh {
    let app = sleepy_app().await.to_string();
    let ctl = TestController::start_with_identity(
        &registry("books", 7001, &[]),
        Duration::from_secs(3600),
    );
    let books = ctl
        .meshed_proxy(
            "books",
            &[
                ("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", &app),
                (
                    "CONDUIT_PROXY_WORKLOAD_LABELS",
                    "namespace=demo,workload=books,pod=books-0",
                ),
            ],
        )
        .await;
    let web = ctl
        .meshed_proxy(
            "web",
            &[(
                "CONDUIT_PROXY_WORKLOAD_LABELS",
                "namespace=demo,workload=web,pod=web-0",
            )],
        )
        .await;
    let services = format!(
        "services:\n  - name: books\n    namespace: demo\n    ports:\n      - port: 7001\n        endpoints:\n{}  - name: web\n    namespace: demo\n    ports:\n      - port: 7000\n        endpoints:\n{}",
        endpoint(&books, "books"),
        endpoint(&web, "web"),
    );
    let profiles = "profiles:\n  - service: books.demo.svc.cluster.local\n    routes:\n      - name: GET /ms/{n}\n        condition: {method: GET, pathRegex: '/ms/\\d+'}\n";
    ctl.write_registry(&format!("{services}{profiles}"));
    let mesh = Mesh {
        ctl,
        web,
        _books: books,
    };
    mesh.until_pulled_twice().await;
    mesh
}

fn res(ns: &str, kind: &str, name: &str) -> Resource {
    Resource {
        namespace: ns.into(),
        kind: kind.into(),
        name: name.into(),
    }
}

impl Mesh {
    fn addr(&self) -> String {
        self.ctl.grpc.to_string()
    }

    async fn stat(
        &self,
        resource: Resource,
        from: Option<Resource>,
        to: Option<Resource>,
    ) -> StatResponse {
        let args = StatArgs {
            resource,
            from,
            to,
            window: Duration::from_secs(60),
        };
        viz::stat::query(&self.addr(), &args).await.unwrap()
    }

    /// The golden figures of the row named `name`.
    async fn golden(
        &self,
        resource: Resource,
        from: Option<Resource>,
        to: Option<Resource>,
        name: &str,
    ) -> Golden {
        let rsp = self.stat(resource, from, to).await;
        rsp.rows
            .iter()
            .find(|r| r.resource.as_ref().unwrap().name == name)
            .and_then(|r| r.golden)
            .unwrap_or_default()
    }

    /// Waits until the controller knows both proxies and has pulled each twice: what
    /// happens next is counted from a known start.
    async fn until_pulled_twice(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let rsp = self.stat(res("demo", "deploy", ""), None, None).await;
            let covered = rsp
                .window
                .map(|w| Duration::try_from(w).unwrap())
                .unwrap_or_default();
            if rsp.rows.len() == 2 && !covered.is_zero() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the controller does not pull the proxies: {rsp:?}"
            );
            tokio::time::sleep(STATS_INTERVAL).await;
        }
    }

    /// Waits until books' row counts `n` requests.
    async fn until_books_counted(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let g = self
                .golden(res("demo", "deploy", "books"), None, None, "books")
                .await;
            if g.requests == n {
                return;
            }
            assert!(
                g.requests < n && Instant::now() < deadline,
                "books counted {} requests, waiting for {n}",
                g.requests
            );
            tokio::time::sleep(STATS_INTERVAL).await;
        }
    }
}

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

/// 600 requests of 10 ms, 300 of 40 ms, 100 of 80 ms answered 500.
fn mix(i: usize) -> String {
    match i % 10 {
        0..=5 => "/ms/10".into(),
        6..=8 => "/ms/40".into(),
        _ => "/fail/80".into(),
    }
}

/// Within the histograms' 1% of `at_least_ms`, plus scheduling slack, and never below it.
fn assert_latency(us: u64, at_least_ms: u64, what: &str) {
    let low = at_least_ms * 1000;
    let high = low + low / 100 + 15_000;
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
    assert_latency(books.p95_us, 80, "p95");
    assert_latency(books.p99_us, 80, "p99");
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
    assert!((10.0..25.0).contains(&p50), "{row}");

    // Routes: the profile's route, and the rest.
    let routes = viz::routes::query(
        &mesh.addr(),
        res("demo", "svc", "books"),
        None,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let by_route: HashMap<&str, &Golden> = routes
        .rows
        .iter()
        .map(|r| (r.route.as_str(), r.golden.as_ref().unwrap()))
        .collect();
    assert_eq!(routes.rows.len(), 2, "{routes:?}");
    assert_eq!(routes.rows[0].route, "GET /ms/{n}");
    let (ms, other) = (by_route["GET /ms/{n}"], by_route["[DEFAULT]"]);
    // The warm-up request may have gone before web's proxy had the profile.
    assert_eq!(ms.requests + other.requests, 1001);
    assert!(ms.requests >= 900, "{ms:?}");
    assert_eq!(ms.successes, ms.requests);
    assert_eq!(other.successes, other.requests - 100);
    assert_latency(other.p50_us, 80, "[DEFAULT] p50");
    let table = viz::routes::render(&routes, "svc/books", Output::Table);
    assert!(
        table.lines().nth(2).unwrap().starts_with("[DEFAULT]"),
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
}

/// Sends GETs of `path` through web's proxy every 20 ms until the returned sender is dropped.
fn keep_requesting(web: SocketAddr, path: &'static str) -> tokio::sync::oneshot::Sender<()> {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        for _ in 0..500 {
            // Stopped, or its sender dropped.
            if !matches!(
                stopped.try_recv(),
                Err(tokio::sync::oneshot::error::TryRecvError::Empty)
            ) {
                return;
            }
            body_string(get_via(web, BOOKS, path).await).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    stop
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

/// Runs headless Chromium on `url` with `extra` flags; its stdout and stderr.
async fn chromium(chromium: &std::path::Path, url: &str, extra: &[&str]) -> (String, String) {
    let profile = tempdir("chromium-profile");
    let mut cmd = tokio::process::Command::new(chromium);
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--window-size=1400,1500",
        // Wait for the page's first refreshes and its tap (which ends by its limit).
        "--virtual-time-budget=8000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("chromium finishes")
        .unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("conduit-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The value of `attr` on the element carrying `marker` in `dom`.
fn attr<'a>(dom: &'a str, marker: &str, attr: &str) -> Option<&'a str> {
    let at = dom.find(marker)?;
    let tag_start = dom[..at].rfind('<')?;
    let tag = &dom[tag_start..at + dom[at..].find('>')?];
    let value = tag.split(&format!("{attr}=\"")).nth(1)?;
    value.split('"').next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_mesh_in_a_browser() {
    let Some(browser) = require_tool("chromium", "loads the dashboard headless") else {
        return;
    };
    let mesh = mesh().await;
    let traffic = keep_requesting(mesh.web.outbound, "/ms/1");
    let failing = keep_requesting(mesh.web.outbound, "/fail/1");
    let deadline = Instant::now() + Duration::from_secs(20);
    while mesh
        .golden(res("demo", "deploy", "books"), None, None, "books")
        .await
        .requests
        < 10
    {
        assert!(Instant::now() < deadline, "no traffic counted");
        tokio::time::sleep(STATS_INTERVAL).await;
    }
    // The API says what is wrong with a query.
    let rsp = get(mesh.ctl.dashboard, "/api/stat?kind=replicaset").await;
    assert_eq!(rsp.status(), 400);
    let body: serde_json::Value = serde_json::from_str(&body_string(rsp).await).unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("unknown kind"),
        "{body}"
    );
    assert_eq!(get(mesh.ctl.dashboard, "/nothing-here").await.status(), 404);
    let rsp = get(mesh.ctl.dashboard, "/api/stat?kind=deploy&namespace=demo").await;
    assert_eq!(rsp.status(), 200);
    let body: serde_json::Value = serde_json::from_str(&body_string(rsp).await).unwrap();
    assert_eq!(body["rows"].as_array().unwrap().len(), 2, "{body}");

    let url = format!(
        "http://{}/?namespace=demo&refresh=500&tap=deployment/books&limit=3",
        mesh.ctl.dashboard
    );

    // The page as the browser built it: no error, the demo's workloads with traffic, the
    // edge, books' route, and a live tap.
    let (dom, log) = chromium(&browser, &url, &["--dump-dom"]).await;
    assert_eq!(
        attr(&dom, "<body", "data-errors"),
        Some("0"),
        "{dom}\n{log}"
    );
    assert!(!log.contains("Uncaught"), "{log}");
    let loaded: u32 = attr(&dom, "<body", "data-loaded").unwrap().parse().unwrap();
    assert!(loaded >= 1, "{dom}");
    for name in ["deploy/books", "svc/books"] {
        let rps: f64 = attr(&dom, &format!("data-name=\"{name}\""), "data-rps")
            .unwrap_or_else(|| panic!("no row for {name} in {dom}"))
            .parse()
            .unwrap();
        assert!(rps > 0.0, "{name}: {rps}");
    }
    assert!(dom.contains("data-src=\"web\" data-dst=\"books\""), "{dom}");
    assert!(dom.contains("data-route=\"GET /ms/{n}\""), "{dom}");
    assert_eq!(dom.matches("data-event=\"req\"").count(), 3, "{dom}");
    assert_eq!(dom.matches("data-event=\"end\"").count(), 3, "{dom}");

    // And a picture of it, kept with the test's build output.
    let png = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    let (_, log) = chromium(
        &browser,
        &url,
        &[&format!("--screenshot={}", png.display())],
    )
    .await;
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "no screenshot ({size} bytes): {log}");
    println!("dashboard screenshot: {}", png.display());
    drop((traffic, failing));
}
