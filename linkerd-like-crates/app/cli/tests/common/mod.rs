//! What the observability tests share: a controller, a sleepy app behind books' proxy, web's
//! proxy as the client, and ways to drive and read them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use conduit_api::stats::{Golden, StatResponse};
use conduit_api::tap::Resource;
use conduit_app_cli::viz::{self, stat::StatArgs};
use conduit_app_integration::*;
use http_body_util::Full;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub const BOOKS: &str = "books.demo.svc.cluster.local:7001";

/// An app that sleeps `N` ms for `/ms/N` (then 200) and `/fail/N` (then 500).
pub async fn sleepy_app() -> SocketAddr {
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
pub struct Mesh {
    pub ctl: TestController,
    pub web: TestProxy,
    _books: TestProxy,
}

pub fn endpoint(proxy: &TestProxy, name: &str) -> String {
    format!(
        "          - address: {}\n            identity: {}\n            labels: {{workload: {name}, pod: {name}-0}}\n            tapPort: {}\n",
        proxy.inbound,
        identity_name(name),
        proxy.tap.unwrap().port()
    )
}

pub async fn mesh() -> Mesh {
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
    // web is a client only: no service lists it, the registry names its pod.
    let services = format!(
        "services:\n  - name: books\n    namespace: demo\n    ports:\n      - port: 7001\n        endpoints:\n{}pods:\n  - name: web-0\n    namespace: demo\n    ip: {}\n    identity: {}\n    labels: {{workload: web}}\n    tapPort: {}\n",
        endpoint(&books, "books"),
        web.inbound.ip(),
        identity_name("web"),
        web.tap.unwrap().port(),
    );
    // A 404 is a success by default; this profile says it is a failure on /missing.
    let profiles = "profiles:\n  - service: books.demo.svc.cluster.local\n    routes:\n      - name: GET /ms/{n}\n        condition: {method: GET, pathRegex: '/ms/\\d+'}\n      - name: GET /missing\n        condition: {method: GET, pathRegex: '/missing'}\n        responseClasses: [{condition: {status: {min: 404}}, isFailure: true}]\n";
    ctl.write_registry(&format!("{services}{profiles}"));
    let mesh = Mesh {
        ctl,
        web,
        _books: books,
    };
    mesh.until_pulled_twice().await;
    mesh
}

pub fn res(ns: &str, kind: &str, name: &str) -> Resource {
    Resource {
        namespace: ns.into(),
        kind: kind.into(),
        name: name.into(),
    }
}

impl Mesh {
    pub fn addr(&self) -> String {
        self.ctl.grpc.to_string()
    }

    pub async fn stat(
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

    /// books' routes over the last minute.
    pub async fn books_routes(&self) -> conduit_api::stats::RoutesResponse {
        viz::routes::query(
            &self.addr(),
            res("demo", "svc", "books"),
            None,
            Duration::from_secs(60),
        )
        .await
        .unwrap()
    }

    /// The golden figures of the row named `name`.
    pub async fn golden(
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
    pub async fn until_pulled_twice(&self) {
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
    pub async fn until_books_counted(&self, n: u64) {
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

/// Sends GETs of `path` through web's proxy every 20 ms until the returned sender is dropped.
pub fn keep_requesting(web: SocketAddr, path: &'static str) -> tokio::sync::oneshot::Sender<()> {
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
