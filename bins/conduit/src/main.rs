//! `conduit`: the command line. Its logic lives in `conduit-app-cli`.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
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
    /// Prints the version.
    Version,
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
