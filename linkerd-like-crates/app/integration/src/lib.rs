//! Support for Conduit's integration tests: an in-process proxy on ephemeral ports, HTTP and
//! TCP servers that record what they see, and clients.
//!
//! Every helper is bounded in time: a test that hangs fails after [`TIMEOUT`] instead.

#![forbid(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_debug_implementations
)]

use bytes::Bytes;
use conduit_app_proxy::{resolve, trace, Config, Proxy};
use conduit_control_ca::{generate, LocalTokens};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

mod netns;
mod nginx;
pub use self::netns::{assert_none_in_clear, in_own_netns, iptables, is_root, wiretap};
pub use self::nginx::Nginx;

/// How long any one step of a test may take.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// Runs `f`, failing the test if it takes longer than [`TIMEOUT`].
pub async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, f)
        .await
        .expect("test step timed out")
}

/// A proxy configuration on ephemeral loopback ports, with `vars` applied.
pub fn config(vars: &[(&str, &str)]) -> Config {
    let mut map: HashMap<String, String> = HashMap::from([
        (
            "CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR".into(),
            "127.0.0.1:0".into(),
        ),
        (
            "CONDUIT_PROXY_INBOUND_LISTEN_ADDR".into(),
            "127.0.0.1:0".into(),
        ),
        (
            "CONDUIT_PROXY_ADMIN_LISTEN_ADDR".into(),
            "127.0.0.1:0".into(),
        ),
        ("CONDUIT_PROXY_TAP_LISTEN_ADDR".into(), "127.0.0.1:0".into()),
        ("CONDUIT_PROXY_SHUTDOWN_GRACE_PERIOD".into(), "5s".into()),
    ]);
    for (k, v) in vars {
        map.insert(k.to_string(), v.to_string());
    }
    Config::from_lookup(|k| map.get(k).cloned()).expect("test configuration must be valid")
}

/// A proxy running in this process.
pub struct TestProxy {
    /// The outbound listener.
    pub outbound: SocketAddr,
    /// The inbound listener.
    pub inbound: SocketAddr,
    /// The admin server.
    pub admin: SocketAddr,
    /// The tap server (with an identity).
    pub tap: Option<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<bool>,
}

impl TestProxy {
    /// Starts a proxy; names resolve through DNS, then `hosts`.
    pub async fn spawn(config: Config) -> Self {
        Self::spawn_with_hosts(config, HashMap::new()).await
    }

    /// Starts a proxy whose explicit-mode names resolve from `hosts` first.
    pub async fn spawn_with_hosts(
        config: Config,
        hosts: HashMap<conduit_addr::NameAddr, Vec<SocketAddr>>,
    ) -> Self {
        let resolve = Arc::new(resolve::Static::new(hosts, Some(Arc::new(resolve::Dns))));
        let bound = Proxy::bind(config, resolve, Arc::new(trace::Unmanaged)).expect("bind");
        let (tx, rx) = oneshot::channel();
        let (outbound, inbound, admin, tap) = (
            bound.outbound_addr(),
            bound.inbound_addr(),
            bound.admin_addr(),
            bound.tap_addr(),
        );
        let task = tokio::spawn(bound.run(async move {
            let _ = rx.await;
        }));
        TestProxy {
            outbound,
            inbound,
            admin,
            tap,
            shutdown: Some(tx),
            task,
        }
    }

    /// Begins a graceful shutdown and waits for it; true if everything drained in time.
    pub async fn shutdown(mut self) -> bool {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        bounded(&mut self.task).await.expect("proxy task panicked")
    }

    /// Begins a graceful shutdown without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for a shutdown begun with [`Self::begin_shutdown`].
    pub async fn finished(self) -> bool {
        bounded(self.task).await.expect("proxy task panicked")
    }

    /// The proxy's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let rsp = get(self.admin, "/metrics").await;
        assert_eq!(rsp.status(), 200);
        body_string(rsp).await
    }
}

/// A server's record of what it saw.
#[derive(Clone, Default)]
pub struct Seen {
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
    /// Requests served.
    pub requests: Arc<AtomicUsize>,
}

impl Seen {
    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// The response type of test servers.
pub type TestResponse = http::Response<Full<Bytes>>;

/// Serves HTTP/1 and HTTP/2 (detected per connection) on an ephemeral port with `handler`.
pub async fn http_server<F, Fut>(handler: F) -> (SocketAddr, Seen)
where
    F: Fn(http::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = TestResponse> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            s.connections.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            let requests = s.requests.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    requests.fetch_add(1, Ordering::SeqCst);
                    let fut = handler(req);
                    async move { Ok::<_, std::convert::Infallible>(fut.await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// A server answering every request with 200 and `body`.
pub async fn hello_server(body: &'static str) -> (SocketAddr, Seen) {
    http_server(move |_req| async move { http::Response::new(Full::from(body)) }).await
}

/// A TCP server that echoes each connection until the client half-closes, then closes.
pub async fn tcp_echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// An HTTP/1.1 connection to `addr`.
pub async fn http1_client(
    addr: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = bounded(TcpStream::connect(addr)).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    send
}

/// An HTTP/2 (prior knowledge) connection to `addr`.
pub async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = bounded(TcpStream::connect(addr)).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

/// `GET path` on a new HTTP/1.1 connection to `addr`.
pub async fn get(addr: SocketAddr, path: &str) -> http::Response<Incoming> {
    let mut client = http1_client(addr).await;
    let req = http::Request::get(path)
        .header("host", addr.to_string())
        .body(Full::default())
        .unwrap();
    bounded(client.send_request(req)).await.unwrap()
}

/// Reads a response head (through the blank line) from a raw stream.
pub async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let b = bounded(stream.read_u8()).await.unwrap();
        head.push(b);
    }
    String::from_utf8(head).unwrap()
}

/// A server that accepts WebSocket upgrades (answering 101) and echoes what arrives after.
pub async fn websocket_echo_server() -> SocketAddr {
    let (addr, _) = http_server(|mut req: http::Request<Incoming>| async move {
        assert_eq!(req.headers()["upgrade"], "websocket");
        echo_once_upgraded(&mut req);
        http::Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(Full::default())
            .unwrap()
    })
    .await;
    addr
}

/// Once `req`'s connection is upgraded, echoes what arrives on it, closing after the peer does.
pub fn echo_once_upgraded(req: &mut http::Request<Incoming>) {
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let upgraded = TokioIo::new(on_upgrade.await.unwrap());
        let (mut r, mut w) = tokio::io::split(upgraded);
        tokio::io::copy(&mut r, &mut w).await.unwrap();
        w.shutdown().await.unwrap();
    });
}

/// Reads a whole body as text.
pub async fn body_string(rsp: http::Response<Incoming>) -> String {
    let bytes = bounded(rsp.into_body().collect()).await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Writes `bytes` on a new connection to `addr` and reads until the server closes.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = bounded(TcpStream::connect(addr)).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    bounded(stream.read_to_end(&mut out)).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of a metric sample whose name and labels contain all of `parts`.
pub fn metric_value(text: &str, name: &str, parts: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| parts.iter().all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// True when `CI=true`: tools that are missing are failures there, not skips.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Finds `tool` on PATH; outside CI a missing tool skips the test with a message.
pub fn require_tool(tool: &str, why: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if in_ci() {
            panic!("{tool} is required ({why}) and CI=true: .ci/run must install it");
        }
        println!("skipped: {tool} not found ({why})");
    }
    found
}

/// Runs headless Chromium on `url`, letting the page run for `budget_ms` of its virtual time
/// (its fetches finish before time moves on), with `extra` flags (`--dump-dom`,
/// `--screenshot=PATH`); its stdout and stderr. Each run has a fresh profile.
pub async fn headless_chromium(
    chromium: &std::path::Path,
    url: &str,
    budget_ms: u32,
    extra: &[&str],
) -> (String, String) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let profile = std::env::temp_dir().join(format!(
        "conduit-chromium-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
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
    ])
    .arg(format!("--virtual-time-budget={budget_ms}"))
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("chromium finishes")
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// How often a test controller pulls proxies' stats.
pub const STATS_INTERVAL: Duration = Duration::from_millis(250);

/// A controller with a file registry, in a runtime of its own so that killing it closes
/// every connection it had, as killing the process would; it can start again on its port.
pub struct TestController {
    /// The gRPC address (`CONDUIT_PROXY_DESTINATION_SVC_ADDR`).
    pub grpc: SocketAddr,
    /// The admin server's address.
    pub admin: SocketAddr,
    /// The dashboard's address.
    pub dashboard: SocketAddr,
    registry: std::path::PathBuf,
    dir: std::path::PathBuf,
    identity: Option<TestIdentity>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestController {
    /// Starts a controller serving `registry` (YAML, see `conduit_control_destination::file`).
    pub fn start(registry: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "conduit-test-controller-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("registry.yaml");
        std::fs::write(&path, registry).unwrap();
        let mut ctl = TestController {
            grpc: "127.0.0.1:0".parse().unwrap(),
            admin: "127.0.0.1:0".parse().unwrap(),
            dashboard: "127.0.0.1:0".parse().unwrap(),
            registry: path,
            dir,
            identity: None,
            stop: None,
            thread: None,
        };
        ctl.run();
        ctl
    }

    /// Starts a controller serving `registry` with its identity service on: a fresh trust
    /// anchor and issuer, local tokens, and certificates valid for `lifetime`.
    pub fn start_with_identity(registry: &str, lifetime: Duration) -> Self {
        let mut ctl = Self::start(registry);
        ctl.kill();
        let domain = conduit_identity::Domain::default();
        let year = Duration::from_secs(365 * 86_400);
        let anchor = generate::trust_anchor(&domain, year).unwrap();
        let key = LocalTokens::generate_key().unwrap();
        let id = TestIdentity {
            dir: ctl.dir.join("identity"),
            key_file: ctl.dir.join("token.key"),
            tokens: LocalTokens::from_key(&key).unwrap(),
            anchor,
            lifetime,
        };
        std::fs::create_dir_all(&id.dir).unwrap();
        std::fs::write(id.dir.join("ca.crt"), &id.anchor.cert_pem).unwrap();
        std::fs::write(&id.key_file, key).unwrap();
        ctl.identity = Some(id);
        ctl.rotate_issuer();
        ctl.run();
        ctl
    }

    /// Writes a new issuer, signed by the same anchor, where the controller reads it (key
    /// and certificate replaced together, as a Secret update does).
    pub fn rotate_issuer(&self) {
        let id = self.identity.as_ref().expect("identity is on");
        let domain = conduit_identity::Domain::default();
        let issuer =
            generate::issuer(&id.anchor, &domain, Duration::from_secs(30 * 86_400)).unwrap();
        let staging = self.dir.join("identity.new");
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(staging.join("ca.crt"), &id.anchor.cert_pem).unwrap();
        std::fs::write(staging.join("tls.crt"), &issuer.cert_pem).unwrap();
        std::fs::write(staging.join("tls.key"), &issuer.key_pem).unwrap();
        for file in ["ca.crt", "tls.crt", "tls.key"] {
            std::fs::rename(staging.join(file), id.dir.join(file)).unwrap();
        }
    }

    /// The directory holding the issuer's files (`ca.crt`, `tls.crt`, `tls.key`).
    pub fn identity_dir(&self) -> std::path::PathBuf {
        self.identity.as_ref().expect("identity is on").dir.clone()
    }

    /// The trust anchors' PEM.
    pub fn trust_anchors(&self) -> String {
        self.identity
            .as_ref()
            .expect("identity is on")
            .anchor
            .cert_pem
            .clone()
    }

    /// A file holding a token for service account `sa` in namespace `demo`.
    pub fn token_file(&self, sa: &str) -> std::path::PathBuf {
        self.token_file_in("demo", sa)
    }

    /// A token proving service account `sa` of namespace `ns`, written to a file.
    pub fn token_file_in(&self, ns: &str, sa: &str) -> std::path::PathBuf {
        let id = self.identity.as_ref().expect("identity is on");
        let workload = conduit_identity::Workload {
            service_account: sa.into(),
            namespace: ns.into(),
        };
        let token = self.dir.join(format!("token-{ns}-{sa}"));
        std::fs::write(&token, id.tokens.issue(&workload)).unwrap();
        token
    }

    /// The proxy variables of a meshed workload running as service account `sa` in
    /// namespace `demo`: this controller for discovery and identity, its token, its name.
    pub fn meshed_vars(&self, sa: &str) -> Vec<(String, String)> {
        let token = self.token_file(sa);
        vec![
            (
                "CONDUIT_PROXY_DESTINATION_SVC_ADDR".into(),
                self.grpc.to_string(),
            ),
            (
                "CONDUIT_PROXY_IDENTITY_LOCAL_NAME".into(),
                identity_name(sa),
            ),
            (
                "CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS".into(),
                self.trust_anchors(),
            ),
            (
                "CONDUIT_PROXY_IDENTITY_TOKEN_FILE".into(),
                token.display().to_string(),
            ),
        ]
    }

    /// A proxy meshed with this controller as service account `sa` of namespace `demo`, with
    /// `extra` variables, once it is ready (certified).
    pub async fn meshed_proxy(&self, sa: &str, extra: &[(&str, &str)]) -> TestProxy {
        let vars = self.meshed_vars(sa);
        let mut all: Vec<(&str, &str)> =
            vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.extend_from_slice(extra);
        let proxy = TestProxy::spawn(config(&all)).await;
        until_ready(proxy.admin).await;
        proxy
    }

    /// Credentials for service account `sa`, certified by this controller.
    pub async fn credentials(&self, sa: &str) -> Arc<conduit_identity::Credentials> {
        self.credentials_in("demo", sa, &identity_name(sa)).await
    }

    /// Credentials of the controller's own identity, as a client that taps proxies.
    pub async fn controller_credentials(&self) -> Arc<conduit_identity::Credentials> {
        let name = "conduit-controller.conduit.serviceaccount.identity.conduit.cluster.local";
        self.credentials_in("conduit", "conduit-controller", name)
            .await
    }

    async fn credentials_in(
        &self,
        ns: &str,
        sa: &str,
        name: &str,
    ) -> Arc<conduit_identity::Credentials> {
        let anchors = conduit_identity::TrustAnchors::from_pem(&self.trust_anchors()).unwrap();
        let name = conduit_identity::Name::parse(name).unwrap();
        let creds = conduit_identity::Credentials::generate(name, anchors).unwrap();
        let token = self.token_file_in(ns, sa);
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .connect_lazy();
        let config = conduit_identity::certify::Config {
            token_path: token,
            backoff: conduit_stack::Backoff::default(),
        };
        let mut client = conduit_api::identity::identity_client::IdentityClient::new(channel);
        bounded(conduit_identity::certify::certify_once(
            &creds,
            &mut client,
            &config,
        ))
        .await
        .unwrap();
        Arc::new(creds)
    }

    fn run(&mut self) {
        let mut args = conduit_app_controller::Args::with_registry(
            self.registry.clone(),
            self.grpc,
            "127.0.0.1:0".parse().unwrap(),
        );
        if let Some(id) = &self.identity {
            args = args.with_identity(id.dir.clone(), id.key_file.clone());
            args.identity_lifetime = id.lifetime;
        }
        // Tests read the Stats API soon after their traffic.
        args.stats_interval = STATS_INTERVAL;
        let (stop, stopped) = oneshot::channel::<()>();
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let bound = conduit_app_controller::bind(args, Arc::new(trace::Unmanaged))
                    .await
                    .expect("controller binds");
                bound_tx
                    .send((
                        bound.grpc_addr(),
                        bound.admin_addr(),
                        bound.dashboard_addr(),
                    ))
                    .unwrap();
                bound
                    .run(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
            // Dropping the runtime cancels every connection task: the streams break.
            drop(rt);
        });
        (self.grpc, self.admin, self.dashboard) = bound_rx
            .recv_timeout(TIMEOUT)
            .expect("the controller starts");
        self.stop = Some(stop);
        self.thread = Some(thread);
    }

    /// Kills the controller: every stream to it breaks.
    pub fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }

    /// Starts it again on the same address, with the registry as it is now.
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }

    /// Replaces the registry (whole-file rename, as a ConfigMap update does).
    pub fn write_registry(&self, text: &str) {
        let tmp = self.registry.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.registry).unwrap();
    }
}

impl Drop for TestController {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A controller's identity service state, for tests.
struct TestIdentity {
    dir: std::path::PathBuf,
    key_file: std::path::PathBuf,
    tokens: LocalTokens,
    anchor: generate::CertKey,
    lifetime: Duration,
}

/// The identity of service account `sa` in namespace `demo`.
pub fn identity_name(sa: &str) -> String {
    format!("{sa}.demo.serviceaccount.identity.conduit.cluster.local")
}

/// Waits until the proxy with admin server `admin` says it is ready.
pub async fn until_ready(admin: SocketAddr) {
    bounded(async {
        loop {
            if get(admin, "/ready").await.status() == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// An HTTP/1 GET of `authority` + `path` sent to the proxy at `outbound` (explicit mode, or a
/// stand-in for a redirected application connection), with a matching `Host` header.
pub async fn get_via(
    outbound: SocketAddr,
    authority: &str,
    path: &str,
) -> http::Response<Incoming> {
    let mut client = http1_client(outbound).await;
    let req = http::Request::get(format!("http://{authority}{path}"))
        .header("host", authority)
        .body(Full::<Bytes>::default())
        .expect("a valid request");
    bounded(client.send_request(req)).await.expect("a response")
}

/// A registry of one meshed service `name` in namespace `demo`: one endpoint, whose proxy
/// is `identity`.
pub fn meshed_registry(name: &str, port: u16, endpoint: SocketAddr, identity: &str) -> String {
    format!(
        "services:\n  - name: {name}\n    namespace: demo\n    ports:\n      - port: {port}\n        endpoints:\n          - address: {endpoint}\n            identity: {identity}\n"
    )
}

/// A registry with one service `name` in namespace `demo` on `port`, served by `endpoints`.
pub fn registry(name: &str, port: u16, endpoints: &[SocketAddr]) -> String {
    let mut text = format!(
        "services:\n  - name: {name}\n    namespace: demo\n    ports:\n      - port: {port}\n        endpoints:\n"
    );
    if endpoints.is_empty() {
        text = text.replace("        endpoints:\n", "        endpoints: []\n");
    }
    for e in endpoints {
        text.push_str(&format!("          - address: {e}\n"));
    }
    text
}
