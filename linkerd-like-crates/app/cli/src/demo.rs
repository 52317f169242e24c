//! `conduit demo`: a mesh on this machine, no cluster and no root needed.
//!
//! Three services in namespace `demo` (`web` calling `books` and `authors`; `books` with two
//! replicas) run as "pods", each on its own loopback address (web-0 127.0.1.1, books-0
//! 127.0.1.2, authors-0 127.0.1.3, books-1 127.0.1.4), with the application on the service's
//! port and its own `conduit-proxy` on the usual proxy ports (4140 outbound, 4143 inbound,
//! 4191 admin) of that address. A controller runs on its default ports (gRPC 127.0.0.1:8086,
//! admin 127.0.0.1:9990) with a file registry of the services, whose endpoints are the pods'
//! inbound proxies; `web` finds `books` and `authors` through it, and its proxy balances
//! requests over the books replicas. Traffic flows into `web`, some of it fails on purpose,
//! and the controller's golden metrics (its Stats API: per deployment, per pod, per route of
//! `books`, and the edges between them) refresh until Ctrl-C or `--duration`; the commands
//! that show them (`conduit stat`, `routes`, `edges`, `tap`, `top`) work from another
//! terminal.
//!
//! Every proxy has an identity (its service's service account in namespace `demo`): the demo
//! generates a trust anchor and an issuer for the controller, and a local token per pod; each
//! proxy gets its certificate from the controller, and every call between the services is
//! mutual TLS (the edges table shows it, with both identities; the ingress traffic into
//! `web` is plaintext, as from outside the mesh).
//! Policy lets only `web` call `books` and `authors`: the demo shows a plaintext request
//! straight to a books proxy being refused with 403.

use crate::http::{client_via, get, HttpClient};
use crate::viz;
use bytes::Bytes;
use conduit_api::tap::Resource;
use conduit_app_proxy::{resolve, trace, Config, Proxy, StartError};
use conduit_control_ca::{generate, LocalTokens};
use conduit_identity::{Domain, Workload};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How the demo runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Stop after this long; run until Ctrl-C when `None`.
    pub duration: Option<Duration>,
    /// How often the table refreshes.
    pub interval: Duration,
    /// Requests per second sent to `web`.
    pub rps: u32,
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// An address was taken.
    #[error("{what} cannot listen on {addr}: {source} (is another demo or controller running?)")]
    Bind {
        /// What wanted the address.
        what: String,
        /// The address.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The registry file could not be written.
    #[error("cannot write the demo registry {path:?}: {source}")]
    Registry {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The controller could not start.
    #[error("the controller cannot start: {0} (is another demo or controller running?)")]
    Controller(String),
    /// The identity files could not be made.
    #[error("cannot set up the demo's identities: {0}")]
    Identity(String),
}

/// One demo service.
#[derive(Clone, Copy, Debug)]
struct Service {
    name: &'static str,
    /// Its pods' addresses, one per replica.
    replicas: &'static [Ipv4Addr],
    port: u16,
    /// Requests that fail on purpose, per thousand.
    failure_per_mille: u64,
    /// Work time range, in ms.
    latency_ms: (u64, u64),
}

const WEB: Service = Service {
    name: "web",
    replicas: &[Ipv4Addr::new(127, 0, 1, 1)],
    port: 7000,
    failure_per_mille: 0,
    latency_ms: (0, 1),
};
const BOOKS: Service = Service {
    name: "books",
    replicas: &[Ipv4Addr::new(127, 0, 1, 2), Ipv4Addr::new(127, 0, 1, 4)],
    port: 7001,
    failure_per_mille: 50,
    latency_ms: (1, 5),
};
const AUTHORS: Service = Service {
    name: "authors",
    replicas: &[Ipv4Addr::new(127, 0, 1, 3)],
    port: 7002,
    failure_per_mille: 100,
    latency_ms: (2, 8),
};
const SERVICES: [Service; 3] = [WEB, BOOKS, AUTHORS];

impl Service {
    fn authority(&self) -> String {
        format!("{}.demo.svc.cluster.local:{}", self.name, self.port)
    }
    /// Each service runs as a service account of its own name.
    fn workload(&self) -> Workload {
        Workload {
            service_account: self.name.into(),
            namespace: "demo".into(),
        }
    }
    fn identity(&self) -> String {
        Domain::default()
            .name(&self.workload())
            .map_or_else(|_| String::new(), |n| n.to_string())
    }
    fn pods(&self) -> impl Iterator<Item = Pod> + '_ {
        self.replicas.iter().enumerate().map(|(i, ip)| Pod {
            service: *self,
            name: format!("{}-{i}", self.name),
            ip: *ip,
        })
    }
}

/// One replica of a service: its application and its proxy, on the pod's own address.
#[derive(Clone, Debug)]
struct Pod {
    service: Service,
    name: String,
    ip: Ipv4Addr,
}

impl Pod {
    fn app(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.service.port))
    }
    fn proxy_port(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.ip, port))
    }
}

/// The controller's default ports, on loopback.
const CONTROLLER_GRPC: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8086);
const CONTROLLER_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9990);
const CONTROLLER_DASHBOARD: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8084);

/// A small non-cryptographic generator (xorshift): the demo only needs variety.
#[derive(Debug)]
struct Dice(AtomicU64);

impl Dice {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        Dice(AtomicU64::new(seed | 1))
    }
    fn roll(&self, below: u64) -> u64 {
        let mut x = self.0.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0.store(x, Ordering::Relaxed);
        x % below.max(1)
    }
}

fn bind_error(what: String, addr: SocketAddr) -> impl FnOnce(std::io::Error) -> DemoError {
    move |source| DemoError::Bind { what, addr, source }
}

/// Serves one pod's application.
async fn start_app(pod: &Pod, dice: Arc<Dice>) -> Result<(), DemoError> {
    let listener = TcpListener::bind(pod.app())
        .await
        .map_err(bind_error(format!("the {} app", pod.name), pod.app()))?;
    let outbound = client_via(pod.proxy_port(4140));
    let svc = pod.service;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (dice, outbound) = (dice.clone(), outbound.clone());
            tokio::spawn(async move {
                let handler = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let (dice, outbound) = (dice.clone(), outbound.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(handle(svc, req, &dice, &outbound).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), handler)
                    .await;
            });
        }
    });
    Ok(())
}

async fn handle(
    svc: Service,
    req: http::Request<Incoming>,
    dice: &Dice,
    outbound: &HttpClient,
) -> http::Response<Full<Bytes>> {
    let (lo, hi) = svc.latency_ms;
    tokio::time::sleep(Duration::from_millis(lo + dice.roll(hi - lo + 1))).await;
    let id = 1 + dice.roll(20);
    let (status, body) = if svc.name == "web" {
        // The front end needs both back ends.
        let books = get(outbound, format!("http://{}/books/{id}", BOOKS.authority()));
        let authors = get(
            outbound,
            format!("http://{}/authors/{id}", AUTHORS.authority()),
        );
        match tokio::join!(books, authors) {
            (Some((b, book)), Some((a, author))) if b.is_success() && a.is_success() => (
                http::StatusCode::OK,
                format!(
                    "{{\"book\":{},\"author\":{}}}",
                    String::from_utf8_lossy(&book),
                    String::from_utf8_lossy(&author)
                ),
            ),
            _ => (
                http::StatusCode::BAD_GATEWAY,
                "{\"error\":\"a back end failed\"}".to_string(),
            ),
        }
    } else if dice.roll(1000) < svc.failure_per_mille {
        (
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "{\"error\":\"simulated failure\"}".to_string(),
        )
    } else {
        (
            http::StatusCode::OK,
            format!(
                "{{\"service\":\"{}\",\"id\":{id},\"path\":\"{}\"}}",
                svc.name,
                req.uri().path()
            ),
        )
    };
    let mut rsp = http::Response::new(Full::from(body));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    rsp
}

/// The controller's registry: each service's endpoints are its pods' inbound proxies, as a
/// Kubernetes EndpointSlice lists its pods.
fn registry() -> String {
    let mut text = String::from("services:\n");
    for svc in SERVICES {
        let _ = write!(
            text,
            "  - name: {}\n    namespace: demo\n    ports:\n      - port: {}\n        endpoints:\n",
            svc.name, svc.port
        );
        for pod in svc.pods() {
            let _ = write!(
                text,
                "          - address: {}\n            identity: {}\n            labels: {{pod: {}, workload: {}}}\n",
                pod.proxy_port(4143),
                svc.identity(),
                pod.name,
                svc.name
            );
        }
    }
    // Routes name what the back ends serve: `conduit routes svc/books` shows them.
    text.push_str("profiles:\n");
    for svc in [BOOKS, AUTHORS] {
        let _ = write!(
            text,
            "  - service: {0}.demo.svc.cluster.local\n    routes:\n      - name: GET /{0}/{{id}}\n        condition: {{method: GET, pathRegex: '/{0}/\\d+'}}\n",
            svc.name
        );
    }
    // books and authors answer only web, over mTLS; web takes the ingress traffic, and ports
    // without a Server keep the default (all-unauthenticated).
    text.push_str("servers:\n");
    for svc in [BOOKS, AUTHORS] {
        let _ = write!(
            text,
            "  - name: {0}-http\n    namespace: demo\n    spec: {{podSelector: {{workload: {0}}}, port: {1}, proxyProtocol: HTTP/1}}\n",
            svc.name, svc.port
        );
    }
    text.push_str("authorizationPolicies:\n");
    for svc in [BOOKS, AUTHORS] {
        let _ = write!(
            text,
            "  - name: {0}-from-web\n    namespace: demo\n    spec: {{server: {0}-http, identities: [{1}]}}\n",
            svc.name,
            WEB.identity()
        );
    }
    text
}

/// A plaintext request straight to books' inbound proxy, as an unmeshed client would send:
/// the policy refuses it. Returns the status and reason shown.
async fn refused_sample() -> Option<(http::StatusCode, String)> {
    let pod = BOOKS.pods().next()?;
    let inbound = pod.proxy_port(4143);
    let client = client_via(inbound);
    let req = http::Request::get(format!("http://{}/", BOOKS.authority()))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .ok()?;
    let rsp = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .ok()?
        .ok()?;
    let reason = rsp
        .headers()
        .get("conduit-proxy-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    Some((rsp.status(), reason))
}

/// The demo's mesh identity: a fresh trust anchor and issuer (in `dir/identity`, as the
/// controller reads them), the key of the local tokens, and a token file per service.
struct Identities {
    anchors_pem: String,
    issuer_dir: PathBuf,
    token_key: PathBuf,
    tokens: PathBuf,
}

fn identities(dir: &Path) -> Result<Identities, DemoError> {
    let domain = Domain::default();
    let year = Duration::from_secs(365 * 86_400);
    let err = |e: &dyn std::fmt::Display| DemoError::Identity(e.to_string());
    let anchor = generate::trust_anchor(&domain, year).map_err(|e| err(&e))?;
    let issuer = generate::issuer(&anchor, &domain, year).map_err(|e| err(&e))?;
    let key = LocalTokens::generate_key().map_err(|e| err(&e))?;
    let tokens = LocalTokens::from_key(&key).map_err(|e| err(&e))?;
    let ids = Identities {
        anchors_pem: anchor.cert_pem.clone(),
        issuer_dir: dir.join("identity"),
        token_key: dir.join("token.key"),
        tokens: dir.join("tokens"),
    };
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&ids.issuer_dir)?;
        std::fs::create_dir_all(&ids.tokens)?;
        std::fs::write(ids.issuer_dir.join("ca.crt"), &anchor.cert_pem)?;
        std::fs::write(ids.issuer_dir.join("tls.crt"), &issuer.cert_pem)?;
        std::fs::write(ids.issuer_dir.join("tls.key"), &issuer.key_pem)?;
        std::fs::write(&ids.token_key, &key)?;
        for svc in SERVICES {
            std::fs::write(ids.tokens.join(svc.name), tokens.issue(&svc.workload()))?;
        }
        Ok(())
    };
    write().map_err(|e| err(&e))?;
    Ok(ids)
}

/// Starts the controller with the demo's registry, written to a file of its own, and its
/// identity service.
async fn start_controller(
    dir: &Path,
    ids: &Identities,
    stop: watch::Receiver<bool>,
) -> Result<PathBuf, DemoError> {
    let path = dir.join("registry.yaml");
    std::fs::write(&path, registry()).map_err(|source| DemoError::Registry {
        path: path.clone(),
        source,
    })?;
    let mut args = conduit_app_controller::Args::with_registry(
        path.clone(),
        CONTROLLER_GRPC,
        CONTROLLER_ADMIN,
    )
    .with_identity(ids.issuer_dir.clone(), ids.token_key.clone());
    args.log = "warn".to_string();
    // The tables refresh every second or two: pull the proxies as often.
    args.stats_interval = Duration::from_secs(1);
    args.dashboard_addr = CONTROLLER_DASHBOARD;
    let bound = conduit_app_controller::bind(args, Arc::new(trace::Unmanaged))
        .await
        .map_err(|e| DemoError::Controller(e.to_string()))?;
    let mut stop = stop;
    tokio::spawn(bound.run(async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
    Ok(path)
}

async fn start_proxy(
    pod: &Pod,
    ids: &Identities,
    stop: watch::Receiver<bool>,
) -> Result<(), DemoError> {
    let vars = HashMap::from([
        (
            "CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR",
            pod.proxy_port(4140).to_string(),
        ),
        (
            "CONDUIT_PROXY_INBOUND_LISTEN_ADDR",
            pod.proxy_port(4143).to_string(),
        ),
        (
            "CONDUIT_PROXY_ADMIN_LISTEN_ADDR",
            pod.proxy_port(4191).to_string(),
        ),
        (
            "CONDUIT_PROXY_TAP_LISTEN_ADDR",
            pod.proxy_port(4190).to_string(),
        ),
        (
            "CONDUIT_PROXY_WORKLOAD_LABELS",
            format!(
                "namespace=demo,workload={},pod={}",
                pod.service.name, pod.name
            ),
        ),
        ("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", pod.app().to_string()),
        ("CONDUIT_PROXY_SHUTDOWN_GRACE_PERIOD", "2s".to_string()),
        (
            "CONDUIT_PROXY_DESTINATION_SVC_ADDR",
            CONTROLLER_GRPC.to_string(),
        ),
        ("CONDUIT_PROXY_DESTINATION_CONTEXT", "ns:demo".to_string()),
        ("CONDUIT_PROXY_IDENTITY_LOCAL_NAME", pod.service.identity()),
        (
            "CONDUIT_PROXY_POLICY_WORKLOAD",
            format!("demo:{}", pod.name),
        ),
        (
            "CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS",
            ids.anchors_pem.clone(),
        ),
        (
            "CONDUIT_PROXY_IDENTITY_TOKEN_FILE",
            ids.tokens.join(pod.service.name).display().to_string(),
        ),
    ]);
    let config = match Config::from_lookup(|k| vars.get(k).cloned()) {
        Ok(c) => c,
        Err(e) => unreachable!("the demo's own configuration is valid: {e}"),
    };
    let bound = Proxy::bind(config, Arc::new(resolve::Dns), Arc::new(trace::Unmanaged)).map_err(
        |e| match e {
            StartError::Bind { var, addr, source } => DemoError::Bind {
                what: format!("the {} proxy ({var})", pod.name),
                addr,
                source,
            },
            StartError::Identity(e) => DemoError::Identity(e),
        },
    )?;
    let mut stop = stop;
    tokio::spawn(bound.run(async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
    Ok(())
}

/// Sends `rps` requests per second to `web` through its inbound proxy, as an ingress would.
fn start_traffic(rps: u32, mut stop: watch::Receiver<bool>) {
    let client = client_via(SocketAddr::from((WEB.replicas[0], 4143)));
    let period = Duration::from_secs_f64(1.0 / f64::from(rps.max(1)));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let limit = Arc::new(tokio::sync::Semaphore::new(64));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                continue;
            };
            let client = client.clone();
            tokio::spawn(async move {
                let _ = get(&client, format!("http://{}/", WEB.authority())).await;
                drop(permit);
            });
        }
    });
}

/// Requests tapped for each screen's live view.
const LIVE_REQUESTS: u32 = 8;

/// The window the demo's tables cover.
const WINDOW: Duration = Duration::from_secs(30);

/// The observability commands a user can run against the demo, printed at its start.
const TRY: &[&str] = &[
    "conduit stat deploy -n demo",
    "conduit stat po -n demo -o wide",
    "conduit routes svc/books -n demo",
    "conduit edges deploy -n demo",
    "conduit tap deploy/web -n demo --to deploy/books",
    "conduit top deploy/books -n demo",
    "conduit dashboard",
];

/// One screen: the controller's answers to `stat deploy`, `stat po`, `routes svc/books` and
/// `edges deploy`, each under a heading. A query that fails shows its reason instead.
pub async fn screen(controller: &str) -> String {
    let stat = |kind: &str| viz::stat::StatArgs {
        resource: Resource {
            namespace: "demo".into(),
            kind: kind.into(),
            name: String::new(),
        },
        from: None,
        to: None,
        window: WINDOW,
    };
    let mut out = String::new();
    let or_reason = |r: Result<String, viz::VizError>| r.unwrap_or_else(|e| format!("{e}\n"));
    let deploys = viz::stat::query(controller, &stat("deployment")).await;
    let covered = deploys
        .as_ref()
        .ok()
        .and_then(|r| r.window)
        .and_then(|w| Duration::try_from(w).ok())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "DEPLOYMENTS in namespace demo, over the last {}s (conduit stat deploy -n demo)",
        covered.as_secs()
    );
    out.push_str(&or_reason(
        deploys.map(|r| viz::stat::render(&r, viz::Output::Table, false)),
    ));
    out.push_str("\nPODS (conduit stat po -n demo)\n");
    out.push_str(&or_reason(
        viz::stat::query(controller, &stat("pod"))
            .await
            .map(|r| viz::stat::render(&r, viz::Output::Table, false)),
    ));
    out.push_str("\nROUTES of svc/books (conduit routes svc/books -n demo)\n");
    let books = Resource {
        namespace: "demo".into(),
        kind: "service".into(),
        name: "books".into(),
    };
    out.push_str(&or_reason(
        viz::routes::query(controller, books, None, WINDOW)
            .await
            .map(|r| viz::routes::render(&r, "svc/books", viz::Output::Table)),
    ));
    out.push_str("\nEDGES (conduit edges deploy -n demo)\n");
    out.push_str(&or_reason(
        viz::edges::query(controller, "deployment", "demo", WINDOW)
            .await
            .map(|r| viz::edges::render(&r, viz::Output::Table)),
    ));
    out.push_str(&live(controller).await);
    out
}

/// A few of web's requests to books, live (`conduit tap`), and the paths they went to
/// (`conduit top`), from one short tap.
async fn live(controller: &str) -> String {
    let args = viz::tap::TapArgs {
        target: Resource {
            namespace: "demo".into(),
            kind: "deployment".into(),
            name: "web".into(),
        },
        to: Some(Resource {
            namespace: "demo".into(),
            kind: "deployment".into(),
            name: "books".into(),
        }),
        limit: LIVE_REQUESTS,
        ..Default::default()
    };
    let mut out =
        String::from("\nLIVE (conduit tap deploy/web -n demo --to deploy/books --limit 8)\n");
    let mut top = viz::top::Top::default();
    let tapped = tokio::time::timeout(Duration::from_secs(2), async {
        let mut events = viz::tap::watch(controller, &args).await?;
        while let Ok(Some(event)) = events.message().await {
            if out.lines().count() < 7 {
                out.push_str(&viz::tap::render(&event, viz::Output::Table));
                out.push('\n');
            }
            top.add(&event);
        }
        Ok::<_, viz::VizError>(())
    })
    .await;
    match tapped {
        Ok(Ok(())) => {}
        Ok(Err(e)) => out.push_str(&format!("{e}\n")),
        Err(_) => out.push_str("(no requests within 2s)\n"),
    }
    out.push_str("\nTOP of those requests (conduit top deploy/web -n demo)\n");
    out.push_str(&top.render(5));
    out
}

/// Runs the demo, writing the table to `out`, until `opts.duration` passes or Ctrl-C.
pub async fn run(opts: Options, out: &mut (dyn Write + Send)) -> Result<(), DemoError> {
    let dice = Arc::new(Dice::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let dir = std::env::temp_dir().join(format!("conduit-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| DemoError::Registry {
        path: dir.clone(),
        source,
    })?;
    let ids = identities(&dir)?;
    let registry = start_controller(&dir, &ids, stop_rx.clone()).await?;
    let pods: Vec<Pod> = SERVICES.iter().flat_map(|s| s.pods()).collect();
    for pod in &pods {
        start_app(pod, dice.clone()).await?;
        start_proxy(pod, &ids, stop_rx.clone()).await?;
    }
    let _ = writeln!(
        out,
        "Conduit demo: three services in namespace demo, each pod with its own proxy; books has two replicas."
    );
    let _ = writeln!(
        out,
        "  mTLS on between every proxy: identities <service>.demo{}, trust anchor in {}",
        Domain::default().suffix(),
        ids.issuer_dir.join("ca.crt").display()
    );
    let _ = writeln!(
        out,
        "  controller  gRPC {CONTROLLER_GRPC}, admin http://{CONTROLLER_ADMIN}/metrics, dashboard http://{CONTROLLER_DASHBOARD}/, registry {}",
        registry.display()
    );
    for pod in &pods {
        let _ = writeln!(
            out,
            "  {:<10} app {}  proxy: outbound {}, inbound {}, metrics http://{}/metrics",
            pod.name,
            pod.app(),
            pod.proxy_port(4140),
            pod.proxy_port(4143),
            pod.proxy_port(4191),
        );
    }
    let _ = writeln!(
        out,
        "  policy: books and authors accept only web's identity, over mTLS (servers books-http, authors-http)"
    );
    if let Some((status, reason)) = refused_sample().await {
        let _ = writeln!(
            out,
            "  a plaintext request straight to books-0's proxy: {status} {reason}"
        );
    }
    let _ = writeln!(out, "  from another terminal, try:");
    for command in TRY {
        let _ = writeln!(out, "    {command}");
    }
    let _ = writeln!(
        out,
        "Sending {} requests/s to web; Ctrl-C to stop.\n",
        opts.rps
    );
    start_traffic(opts.rps, stop_rx.clone());

    let tty = std::io::stdout().is_terminal();
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    let mut tick = tokio::time::interval(opts.interval);
    tick.tick().await;
    let controller = CONTROLLER_GRPC.to_string();
    loop {
        let stop_at = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let done = tokio::select! {
            _ = tick.tick() => false,
            _ = stop_at => true,
            _ = tokio::signal::ctrl_c() => true,
        };
        let screen = screen(&controller).await;
        if tty {
            let _ = write!(out, "\x1b[2J\x1b[H");
        }
        let _ = writeln!(out, "{screen}");
        let _ = out.flush();
        if done {
            break;
        }
    }
    let _ = stop_tx.send(true);
    // Let the proxies drain their connections.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = registry;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_lists_every_pods_inbound_proxy() {
        let text = registry();
        let state = conduit_control_destination::file::parse(&text, "demo").unwrap();
        let books =
            &state.services[&conduit_control_destination::model::ServiceKey::new("demo", "books")];
        let endpoints: Vec<String> = books.ports[&7001]
            .endpoints
            .keys()
            .map(ToString::to_string)
            .collect();
        assert_eq!(endpoints, ["127.0.1.2:4143", "127.0.1.4:4143"]);
        let identity = books.ports[&7001]
            .endpoints
            .values()
            .next()
            .unwrap()
            .identity
            .clone();
        assert_eq!(
            identity.as_deref(),
            Some("books.demo.serviceaccount.identity.conduit.cluster.local")
        );
        assert_eq!(state.services.len(), 3);
        let policy = conduit_control_policy::file::parse(&text, "demo").unwrap();
        assert_eq!(policy.servers.len(), 2);
        assert_eq!(policy.authorizations.len(), 2);
        assert!(policy
            .pods
            .contains_key(&("demo".to_string(), "books-1".to_string())));
    }
}
