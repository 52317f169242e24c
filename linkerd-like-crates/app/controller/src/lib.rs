//! The controller (`conduit-controller`): service discovery and the control-plane APIs.
//!
//! | port | what |
//! |---|---|
//! | `:8086` | gRPC: Destination (endpoint and profile streams), Identity (`Certify`), Policy (`WatchPort`), TapByResource (`Watch`), Stats (`Stat`, `Routes`, `Edges`) |
//! | `:8084` | the web dashboard ([`conduit_control_viz::Dashboard`]) |
//! | `:9990` | admin: `/metrics`, `/ready`, `/live`; `/meshed-endpoints` (the meshed proxies it knows), `/identity/trust-anchors.pem` and `/identity/issuer.pem` (public certificates, for `conduit check`) |
//!
//! Discovery comes from one source behind one index: a watched YAML file
//! (`--discovery file:PATH`, the way to run without a cluster) or Kubernetes
//! (`--discovery kubernetes`).
//!
//! The identity service is on when `--identity-dir` names the issuer's files; tokens are
//! checked by TokenReview (`--identity-tokens kubernetes`, the default with Kubernetes
//! discovery) or with a local key (`local:KEY-FILE`). With identity on, the gRPC port also
//! speaks TLS as the controller's own identity ([`tls`]), so proxies' tokens and CSRs never
//! cross in clear; clients that do not open with TLS are served in plaintext.

#![forbid(unsafe_code)]

mod args;
mod metrics;
pub mod tls;

pub use self::args::{Args, Discovery, ObjectRef, Tokens};

use conduit_app_admin::{Admin, LogLevel};
use conduit_control_ca::{IdentityService, IssuerFiles, LocalTokens, TokenVerifier};
use conduit_control_destination::{file, DestinationService, Index};
use conduit_control_policy::{PolicyIndex, PolicyService};
use conduit_control_viz::{Clients, Collector, Dashboard, StatsService, TapService};
use conduit_stack::drain;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How often the issuer's files are re-read.
const ISSUER_RELOAD: Duration = Duration::from_millis(500);
/// How often the issuer's Secret is read through the API: one small GET, so a rotation is
/// picked up within seconds at no real cost to the API server.
const SECRET_RELOAD: Duration = Duration::from_secs(10);

/// Why the controller cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// What the listener is for.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The discovery source could not be read.
    #[error("discovery: {0}")]
    Discovery(String),
    /// The identity service could not be set up.
    #[error("identity: {0}")]
    Identity(String),
}

/// A controller with its listeners bound and its index loaded, ready to [`run`](Bound::run).
pub struct Bound {
    args: Args,
    kube: Option<kube::Client>,
    index: Arc<Index>,
    policy: Arc<PolicyIndex>,
    grpc: tokio::net::TcpListener,
    admin: conduit_transport::Listener,
    dashboard: conduit_transport::Listener,
    log_level: Arc<dyn LogLevel>,
    identity: Option<Identity>,
}

/// The identity service, its issuer, and the controller's own TLS.
struct Identity {
    service: IdentityService,
    issuer: IssuerWatch,
    tls: conduit_tls::ServerTls,
    /// The controller's own certificate, also presented to proxies' tap ports.
    credentials: Arc<conduit_identity::Credentials>,
}

type IssuerWatch = tokio::sync::watch::Receiver<Option<Arc<conduit_control_ca::Issuer>>>;

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("grpc", &self.grpc_addr())
            .field("admin", &self.admin_addr())
            .finish_non_exhaustive()
    }
}

/// Binds the listeners and loads the discovery source once, so that a bad registry or a
/// taken port stops start-up with its reason.
pub async fn bind(args: Args, log_level: Arc<dyn LogLevel>) -> Result<Bound, StartError> {
    let index = Index::new(args.cluster_domain.clone());
    let policy = PolicyIndex::new(args.default_inbound_policy, args.cluster_networks.clone());
    match &args.discovery {
        Discovery::File(path) => file::load_with(path, &index, &file_sections(&policy))
            .await
            .map_err(|e| StartError::Discovery(e.to_string()))?,
        Discovery::Kubernetes => {}
    }
    let kube = match &args.discovery {
        Discovery::Kubernetes => Some(kube::Client::try_default().await.map_err(|e| {
            StartError::Discovery(format!(
                "--discovery kubernetes: cannot reach the Kubernetes API ({e}); outside a cluster, use file:PATH"
            ))
        })?),
        Discovery::File(_) => None,
    };
    let identity = identity(&args, kube.as_ref()).await?;
    let grpc = tokio::net::TcpListener::bind(args.destination_addr)
        .await
        .map_err(|source| StartError::Bind {
            what: "gRPC",
            addr: args.destination_addr,
            source,
        })?;
    let admin = conduit_transport::bind(args.admin_addr).map_err(|source| StartError::Bind {
        what: "admin",
        addr: args.admin_addr,
        source,
    })?;
    let dashboard =
        conduit_transport::bind(args.dashboard_addr).map_err(|source| StartError::Bind {
            what: "dashboard",
            addr: args.dashboard_addr,
            source,
        })?;
    Ok(Bound {
        args,
        kube,
        index,
        grpc,
        admin,
        dashboard,
        log_level,
        identity,
        policy,
    })
}

/// The parts of the file registry other than services and profiles.
fn file_sections(policy: &Arc<PolicyIndex>) -> Vec<Arc<dyn file::Section>> {
    vec![Arc::new(conduit_control_policy::file::FileSection(
        policy.clone(),
    ))]
}

/// `/meshed-endpoints`: one line per meshed endpoint, `<address> <identity> <label>=<value>...`.
fn meshed_endpoints(index: &Index) -> String {
    let mut out = String::new();
    for (addr, e) in index.meshed_endpoints() {
        out.push_str(&format!("{addr} {}", e.identity.as_deref().unwrap_or("-")));
        for (k, v) in &e.labels {
            out.push_str(&format!(" {k}={v}"));
        }
        out.push('\n');
    }
    out
}

/// The identity service, if `--identity-dir` is given: its issuer loaded (and watched) and
/// its token verifier chosen. Any problem stops start-up, naming the flag.
async fn identity(
    args: &Args,
    kube: Option<&kube::Client>,
) -> Result<Option<Identity>, StartError> {
    let issuer = match (&args.identity_dir, &args.identity_issuer_secret, kube) {
        (None, None, _) => return Ok(None),
        (Some(dir), _, _) => {
            let files = IssuerFiles {
                anchors: dir.join("ca.crt"),
                cert: dir.join("tls.crt"),
                key: dir.join("tls.key"),
            };
            files
                .watch(ISSUER_RELOAD)
                .await
                .map_err(|e| StartError::Identity(format!("--identity-dir: {e}")))?
        }
        (None, Some(secret), Some(client)) => {
            let source = conduit_control_k8s::IssuerSecret::new(
                client.clone(),
                &secret.namespace,
                &secret.name,
            );
            conduit_control_ca::watch_issuer(source, SECRET_RELOAD)
                .await
                .map_err(|e| StartError::Identity(format!("--identity-issuer-secret: {e}")))?
        }
        (None, Some(_), None) => {
            return Err(StartError::Identity(
                "--identity-issuer-secret: the Secret is read through Kubernetes: use --discovery kubernetes, or --identity-dir".into(),
            ))
        }
    };
    let tokens: Arc<dyn TokenVerifier> = match (&args.identity_tokens, kube) {
        (Some(Tokens::Local(path)), _) => {
            let key = tokio::fs::read_to_string(path).await.map_err(|e| {
                StartError::Identity(format!(
                    "--identity-tokens: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            Arc::new(
                LocalTokens::from_key(&key)
                    .map_err(|e| StartError::Identity(format!("--identity-tokens: {e}")))?,
            )
        }
        (Some(Tokens::Kubernetes) | None, Some(client)) => {
            Arc::new(conduit_control_k8s::TokenReviews::new(client.clone()))
        }
        (Some(Tokens::Kubernetes) | None, None) => {
            return Err(StartError::Identity(
                "--identity-tokens: without Kubernetes discovery, tokens are checked with a local key: use local:KEY-FILE".into(),
            ))
        }
    };
    let service = IdentityService::new(
        issuer.clone(),
        args.domain(),
        tokens,
        args.identity_lifetime,
    );
    let credentials = tls::certify_self(issuer.clone(), &args.domain(), args.identity_lifetime)
        .map_err(|e| StartError::Identity(format!("the controller's own certificate: {e}")))?;
    let tls = conduit_tls::ServerTls::new(credentials.clone())
        .map_err(|e| StartError::Identity(e.to_string()))?;
    Ok(Some(Identity {
        service,
        issuer,
        tls,
        credentials,
    }))
}

impl Bound {
    /// The gRPC listener's address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().unwrap_or(self.args.destination_addr)
    }

    /// The admin server's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr()
    }

    /// The dashboard's address.
    pub fn dashboard_addr(&self) -> SocketAddr {
        self.dashboard.local_addr()
    }

    /// The index the controller serves from.
    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// Serves until `shutdown` completes (or `/shutdown` is called on the admin server).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (grpc_addr, admin_addr) = (self.grpc_addr(), self.admin_addr());
        let (signal, watch) = drain::channel();
        let admin_shutdown = Arc::new(tokio::sync::Notify::new());
        let metrics = metrics::ControllerMetrics::new(self.index.clone());
        // Ready once the source has given the whole state: at once for a file (it was loaded
        // at start-up), after every watcher's first list for Kubernetes.
        let synced = Arc::new(std::sync::atomic::AtomicBool::new(self.kube.is_none()));
        let mut admin = Admin::new(metrics, self.log_level, admin_shutdown.clone())
            .with_readiness(synced.clone());
        let index = self.index.clone();
        admin = admin.with_page("/meshed-endpoints", move || meshed_endpoints(&index));
        if let Some(Identity { issuer, .. }) = &self.identity {
            let (anchors, chain) = (issuer.clone(), issuer.clone());
            admin = admin
                .with_page("/identity/trust-anchors.pem", move || {
                    anchors
                        .borrow()
                        .as_ref()
                        .map_or_else(String::new, |i| conduit_control_ca::to_pem(i.anchors()))
                })
                .with_page("/identity/issuer.pem", move || {
                    chain
                        .borrow()
                        .as_ref()
                        .map_or_else(String::new, |i| conduit_control_ca::to_pem(i.chain()))
                });
        }
        tokio::spawn(admin.serve(self.admin, watch.clone()));
        if let Discovery::File(path) = &self.args.discovery {
            tokio::spawn(file::watch_with(
                path.clone(),
                self.index.clone(),
                file_sections(&self.policy),
            ));
        }
        if let Some(client) = self.kube.clone() {
            let identities = self.args.domain();
            tokio::spawn(conduit_control_k8s::run(
                client,
                self.index.clone(),
                self.policy.clone(),
                identities,
                synced,
            ));
        }

        let destination = DestinationService::new(self.index.clone()).into_server();
        let mut grpc_drain = watch.clone();
        let (identity, tls, credentials) = match self.identity {
            Some(id) => (
                Some(id.service.into_server()),
                Some(id.tls),
                Some(id.credentials),
            ),
            None => (None, None, None),
        };
        // Proxies serve tap and stats over mTLS only: without an identity, both APIs answer
        // FAILED_PRECONDITION saying so.
        let clients = match Clients::new(credentials) {
            Ok(clients) => clients,
            Err(error) => {
                tracing::error!(%error, "tap and stats are off: the controller's TLS cannot be set up");
                Clients::without_identity()
            }
        };
        let collector = Collector::new(
            self.index.clone(),
            clients.clone(),
            self.args.stats_interval,
        );
        let collecting = tokio::spawn(collector.clone().run());
        let tap = TapService::new(self.index.clone(), clients);
        let stats = StatsService::new(self.index.clone(), collector);
        let dashboard = Dashboard::new(self.index.clone(), stats.clone(), tap.clone());
        let dashboard_addr = self.dashboard.local_addr();
        tokio::spawn(dashboard.serve(self.dashboard, watch.clone()));
        let grpc = tonic::transport::Server::builder()
            .add_service(destination)
            .add_service(PolicyService::new(self.policy.clone()).into_server())
            .add_service(tap.into_server())
            .add_service(stats.into_server())
            .add_optional_service(identity)
            .serve_with_incoming_shutdown(tls::incoming(self.grpc, tls), async move {
                grpc_drain.signaled().await;
            });
        let grpc = tokio::spawn(grpc);
        drop(watch);
        tracing::info!(grpc = %grpc_addr, admin = %admin_addr, dashboard = %dashboard_addr, "controller ready");

        tokio::select! {
            () = shutdown => {}
            () = admin_shutdown.notified() => {}
        }
        tracing::info!("shutting down");
        // Streams are endless by design: give them a moment to see the shutdown, then go.
        let _ = tokio::time::timeout(Duration::from_secs(2), signal.drain()).await;
        grpc.abort();
        collecting.abort();
    }
}
