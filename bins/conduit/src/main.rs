//! `conduit`: the command line. Its logic lives in `conduit-app-cli`.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use conduit_app_cli::viz;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "conduit",
    version,
    about = "Conduit: the fastest, lightest, simplest service mesh."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a whole mesh on this machine and shows its golden metrics live.
    Demo {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
        /// Seconds between table refreshes.
        #[arg(long, default_value_t = 2)]
        interval: u64,
        /// Requests per second sent to the web service.
        #[arg(long, default_value_t = 50)]
        rps: u32,
    },
    /// Checks the mesh: trust anchors and issuer, the controller, every meshed proxy.
    Check {
        /// The controller's gRPC address.
        #[arg(
            long,
            default_value = "127.0.0.1:8086",
            env = "CONDUIT_CONTROLLER_ADDR"
        )]
        controller: String,
        /// The controller's admin address.
        #[arg(
            long,
            default_value = "127.0.0.1:9990",
            env = "CONDUIT_CONTROLLER_ADMIN_ADDR"
        )]
        controller_admin: String,
        /// Check the issuer files here (`ca.crt`, `tls.crt`, `tls.key`) instead of what the
        /// controller serves.
        #[arg(long)]
        identity_dir: Option<std::path::PathBuf>,
    },
    /// Shows the certificate a workload's proxies are serving.
    Identity {
        /// The workload (or pod, or service account) name.
        workload: String,
        /// The controller's admin address.
        #[arg(
            long,
            default_value = "127.0.0.1:9990",
            env = "CONDUIT_CONTROLLER_ADMIN_ADDR"
        )]
        controller_admin: String,
    },
    /// Prints the control plane's Kubernetes manifests (`conduit install | kubectl apply -f -`),
    /// with a new trust anchor and issuer unless given.
    Install {
        /// The control plane's namespace.
        #[arg(long, default_value = "conduit")]
        controller_namespace: String,
        /// The trust domain.
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
        /// The controller's image.
        #[arg(long)]
        controller_image: Option<String>,
        /// The trust anchors' PEM (with the issuer's certificate and key files).
        #[arg(long, requires_all = ["identity_issuer_certificate_file", "identity_issuer_key_file"])]
        identity_trust_anchors_file: Option<std::path::PathBuf>,
        /// The issuer's certificate PEM.
        #[arg(long, requires = "identity_trust_anchors_file")]
        identity_issuer_certificate_file: Option<std::path::PathBuf>,
        /// The issuer's PKCS#8 key PEM.
        #[arg(long, requires = "identity_trust_anchors_file")]
        identity_issuer_key_file: Option<std::path::PathBuf>,
        /// Days a generated anchor and issuer are valid.
        #[arg(long, default_value_t = 365)]
        days: u64,
    },
    /// Writes a new trust anchor, issuer and local token key for the identity service.
    Issuer {
        /// Where to write `ca.crt`, `tls.crt`, `tls.key` and `token.key`.
        dir: std::path::PathBuf,
        /// The trust domain.
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
        /// The controller's namespace.
        #[arg(long, default_value = "conduit")]
        controller_namespace: String,
        /// Days the anchor and issuer are valid.
        #[arg(long, default_value_t = 365)]
        days: u64,
    },
    /// Prints a local identity token for `<namespace>/<service-account>`.
    Token {
        /// `<namespace>/<service-account>`.
        workload: String,
        /// The token key the controller uses (`--identity-tokens local:KEY-FILE`).
        #[arg(long)]
        key: std::path::PathBuf,
    },
    /// Looks at what the controller knows.
    Diagnostics {
        #[command(subcommand)]
        what: Diagnostics,
    },
    /// Golden metrics per resource: success rate, requests/s, latency percentiles.
    Stat {
        /// `<kind>[/<name>]` or `<kind> <name>`: deploy, pod, svc, ns.
        #[arg(required = true, num_args = 1..=2)]
        resource: Vec<String>,
        #[command(flatten)]
        scope: Scope,
        /// Only requests from this resource (`deploy/web`).
        #[arg(long)]
        from: Option<String>,
        /// Only requests to this resource (`deploy/books`).
        #[arg(long)]
        to: Option<String>,
        /// The window: `1m`, `30s`, up to `10m`.
        #[arg(short = 't', long = "time-window", default_value = "1m", value_parser = humantime::parse_duration)]
        window: Duration,
        /// table, wide or json.
        #[arg(short, long, default_value = "table")]
        output: conduit_app_cli::viz::Output,
    },
    /// Golden metrics per route of a service's profile (`[DEFAULT]`: no route matched).
    Routes {
        /// The service: `svc/books` or `books`.
        service: String,
        #[command(flatten)]
        scope: Scope,
        /// Only requests from this resource (`deploy/web`).
        #[arg(long)]
        from: Option<String>,
        /// The window.
        #[arg(short = 't', long = "time-window", default_value = "1m", value_parser = humantime::parse_duration)]
        window: Duration,
        /// table, wide or json.
        #[arg(short, long, default_value = "table")]
        output: conduit_app_cli::viz::Output,
    },
    /// Who talks to whom, with the identities on both sides and whether it is mTLS.
    Edges {
        /// deploy or pod.
        kind: String,
        #[command(flatten)]
        scope: Scope,
        /// The window.
        #[arg(short = 't', long = "time-window", default_value = "1m", value_parser = humantime::parse_duration)]
        window: Duration,
        /// table, wide (full identities) or json.
        #[arg(short, long, default_value = "table")]
        output: conduit_app_cli::viz::Output,
    },
    /// Live requests of a resource, one line per event.
    Tap {
        #[command(flatten)]
        tap: TapFlags,
        /// wide (adds source and destination workloads) or json (one object per line).
        #[arg(short, long, default_value = "table")]
        output: conduit_app_cli::viz::Output,
    },
    /// A live view of a resource's most requested paths.
    Top {
        #[command(flatten)]
        tap: TapFlags,
        /// Seconds between redraws.
        #[arg(long, default_value_t = 1)]
        refresh: u64,
    },
    /// Prints the dashboard's address (served by the controller).
    Dashboard {
        /// The controller's dashboard address.
        #[arg(
            long,
            default_value = "127.0.0.1:8084",
            env = "CONDUIT_CONTROLLER_DASHBOARD_ADDR"
        )]
        address: String,
    },
    /// Prints the version.
    Version,
}

/// Where to look: the namespace and the controller.
#[derive(Debug, clap::Args)]
struct Scope {
    /// The namespace.
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// Every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// The controller's gRPC address.
    #[arg(
        long,
        default_value = "127.0.0.1:8086",
        env = "CONDUIT_CONTROLLER_ADDR"
    )]
    controller: String,
}

impl Scope {
    fn namespace(&self) -> Option<&str> {
        (!self.all_namespaces).then_some(self.namespace.as_str())
    }
}

#[derive(Debug, clap::Args)]
struct TapFlags {
    /// `<kind>[/<name>]` or `<kind> <name>`: deploy, pod, svc, ns.
    #[arg(required = true, num_args = 1..=2)]
    resource: Vec<String>,
    #[command(flatten)]
    scope: Scope,
    /// Only requests to this resource (`deploy/books`).
    #[arg(long)]
    to: Option<String>,
    /// Only this HTTP method.
    #[arg(long)]
    method: Option<String>,
    /// Only paths that start with this.
    #[arg(long)]
    path: Option<String>,
    /// Only this authority.
    #[arg(long)]
    authority: Option<String>,
    /// Requests per second at most, per proxy.
    #[arg(long, default_value_t = 100.0)]
    max_rps: f64,
    /// Stop after this many requests (0: until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    limit: u32,
}

#[derive(Debug, Subcommand)]
enum Diagnostics {
    /// The endpoints the controller returns for an authority (`books.demo.svc.cluster.local:7001`).
    Endpoints {
        /// The authority: `<svc>.<ns>.svc.<domain>:<port>`, or an IP and port.
        authority: String,
        /// The controller's gRPC address.
        #[arg(
            long,
            default_value = "127.0.0.1:8086",
            env = "CONDUIT_CONTROLLER_ADDR"
        )]
        controller: String,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Stat {
            resource,
            scope,
            from,
            to,
            window,
            output,
        } => viz("stat", async move {
            let ns = scope.namespace();
            let args = conduit_app_cli::viz::stat::StatArgs {
                resource: viz::resource(&resource, ns)?,
                from: from.map(|f| viz::resource_arg(&f, ns)).transpose()?,
                to: to.map(|t| viz::resource_arg(&t, ns)).transpose()?,
                window,
            };
            let rsp = viz::stat::query(&scope.controller, &args).await?;
            Ok(viz::stat::render(&rsp, output, scope.all_namespaces))
        }),
        Command::Routes {
            service,
            scope,
            from,
            window,
            output,
        } => viz("routes", async move {
            let ns = scope.namespace();
            let name = service.strip_prefix("svc/").unwrap_or(&service);
            let svc = viz::resource(&["svc".into(), name.into()], ns)?;
            let from = from.map(|f| viz::resource_arg(&f, ns)).transpose()?;
            let rsp = viz::routes::query(&scope.controller, svc, from, window).await?;
            Ok(viz::routes::render(&rsp, &format!("svc/{name}"), output))
        }),
        Command::Edges {
            kind,
            scope,
            window,
            output,
        } => viz("edges", async move {
            let ns = scope.namespace().unwrap_or_default();
            let rsp = viz::edges::query(&scope.controller, &kind, ns, window).await?;
            Ok(viz::edges::render(&rsp, output))
        }),
        Command::Tap { tap, output } => viz("tap", async move {
            let args = tap_args(&tap)?;
            let mut stdout = std::io::stdout();
            viz::tap::run(&tap.scope.controller, &args, output, &mut stdout, ctrl_c()).await?;
            Ok(String::new())
        }),
        Command::Top { tap, refresh } => viz("top", async move {
            let args = tap_args(&tap)?;
            let mut stdout = std::io::stdout();
            let refresh = Duration::from_secs(refresh.max(1));
            viz::top::run(&tap.scope.controller, &args, refresh, &mut stdout, ctrl_c()).await?;
            Ok(String::new())
        }),
        Command::Dashboard { address } => {
            println!("Conduit dashboard: http://{address}/");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("conduit {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Diagnostics {
            what:
                Diagnostics::Endpoints {
                    authority,
                    controller,
                },
        } => {
            let Some(rt) = runtime() else {
                return ExitCode::FAILURE;
            };
            let timeout = Duration::from_secs(5);
            match rt.block_on(conduit_app_cli::diagnostics::endpoints(
                &controller,
                &authority,
                timeout,
            )) {
                Ok(table) => {
                    print!("{table}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("conduit diagnostics endpoints: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check {
            controller,
            controller_admin,
            identity_dir,
        } => {
            let Some(rt) = runtime() else {
                return ExitCode::FAILURE;
            };
            let opts = conduit_app_cli::check::Options {
                controller,
                admin: controller_admin,
                identity_dir,
                timeout: Duration::from_secs(5),
            };
            let report = rt.block_on(conduit_app_cli::check::run(&opts));
            print!("{report}");
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Identity {
            workload,
            controller_admin,
        } => {
            let Some(rt) = runtime() else {
                return ExitCode::FAILURE;
            };
            match rt.block_on(conduit_app_cli::identity::show(
                &controller_admin,
                &workload,
                Duration::from_secs(5),
            )) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("conduit identity: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Install {
            controller_namespace,
            trust_domain,
            controller_image,
            identity_trust_anchors_file,
            identity_issuer_certificate_file,
            identity_issuer_key_file,
            days,
        } => {
            let defaults = conduit_app_cli::install::InstallOptions::default();
            let issuer = match (
                identity_trust_anchors_file,
                identity_issuer_certificate_file,
                identity_issuer_key_file,
            ) {
                (Some(a), Some(c), Some(k)) => Some([a, c, k]),
                _ => None,
            };
            let options = conduit_app_cli::install::InstallOptions {
                namespace: controller_namespace,
                trust_domain,
                image: controller_image.unwrap_or(defaults.image),
                issuer,
                valid: Duration::from_secs(days.max(1) * 86_400),
            };
            match conduit_app_cli::install::manifests(&options) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("conduit install: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Issuer {
            dir,
            trust_domain,
            controller_namespace,
            days,
        } => {
            let domain = conduit_identity::Domain {
                control_namespace: controller_namespace,
                trust_domain,
            };
            let valid = Duration::from_secs(days.max(1) * 86_400);
            match conduit_app_cli::issuer::generate_into(&dir, &domain, valid) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("conduit issuer: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Token { workload, key } => match conduit_app_cli::issuer::token(&key, &workload) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("conduit token: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Demo {
            duration,
            interval,
            rps,
        } => {
            let opts = conduit_app_cli::demo::Options {
                duration: duration.map(Duration::from_secs),
                interval: Duration::from_secs(interval.max(1)),
                rps: rps.max(1),
            };
            let Some(rt) = runtime() else {
                return ExitCode::FAILURE;
            };
            let mut stdout = std::io::stdout();
            match rt.block_on(conduit_app_cli::demo::run(opts, &mut stdout)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("conduit demo: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Runs an observability command and prints its answer, or says why it has none.
fn viz(
    name: &str,
    command: impl std::future::Future<Output = Result<String, viz::VizError>>,
) -> ExitCode {
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    match rt.block_on(command) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("conduit {name}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn tap_args(tap: &TapFlags) -> Result<viz::tap::TapArgs, viz::VizError> {
    let ns = tap.scope.namespace();
    Ok(viz::tap::TapArgs {
        target: viz::resource(&tap.resource, ns)?,
        to: tap
            .to
            .as_deref()
            .map(|t| viz::resource_arg(t, ns))
            .transpose()?,
        method: tap.method.clone(),
        path: tap.path.clone(),
        authority: tap.authority.clone(),
        max_rps: tap.max_rps,
        limit: tap.limit,
    })
}

/// Completes at Ctrl-C (or never, if the signal cannot be watched).
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The runtime every command runs on; `None` (after saying why) when it cannot start.
fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("conduit: cannot start the runtime: {e}");
            None
        }
    }
}
