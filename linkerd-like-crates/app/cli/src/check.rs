//! `conduit check`: is the mesh healthy?
//!
//! 1. the trust anchors and the issuer: valid now, the issuer a CA chained to an anchor (and,
//!    from `--identity-dir`, holding the matching key), with a warning under 60 days left;
//! 2. the controller: its admin server ready, its gRPC API answering;
//! 3. every meshed proxy the controller knows: reachable over TLS for its identity, serving
//!    a certificate that chains to the anchors, names it, and comes from the current issuer.
//!
//! Without `--identity-dir`, the anchors and issuer are the ones the controller serves on
//! its admin server (public certificates only).

use crate::http::get_text;
use conduit_control_ca::{check_chain, Issuer, IssuerInfo};
use conduit_identity::{Name, TrustAnchors};
use rustls::pki_types::CertificateDer;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// A certificate with less than this left is a warning.
pub const WARN_BEFORE: Duration = Duration::from_secs(60 * 86_400);

/// What to check.
#[derive(Clone, Debug)]
pub struct Options {
    /// The controller's gRPC API (`host:port`).
    pub controller: String,
    /// The controller's admin server (`host:port`).
    pub admin: String,
    /// The issuer's files (`ca.crt`, `tls.crt`, `tls.key`), if checking them directly.
    pub identity_dir: Option<PathBuf>,
    /// Limit on each network step.
    pub timeout: Duration,
}

/// A check's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Ok,
    /// Fine for now.
    Warn,
    /// Broken.
    Fail,
}

/// Every check's outcome, in order.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Status and message of each check.
    pub lines: Vec<(Status, String)>,
}

impl Report {
    fn push(&mut self, status: Status, line: impl Into<String>) {
        self.lines.push((status, line.into()));
    }

    /// Whether nothing failed.
    pub fn passed(&self) -> bool {
        self.lines.iter().all(|(s, _)| *s != Status::Fail)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (status, line) in &self.lines {
            let mark = match status {
                Status::Ok => "√",
                Status::Warn => "‼",
                Status::Fail => "×",
            };
            writeln!(f, "{mark} {line}")?;
        }
        let verdict = if self.passed() {
            "Status check results are √"
        } else {
            "Status check results are ×"
        };
        writeln!(f, "\n{verdict}")
    }
}

/// How long until `t`, in days, for messages.
fn days_left(t: SystemTime, now: SystemTime) -> f64 {
    match t.duration_since(now) {
        Ok(d) => d.as_secs_f64() / 86_400.0,
        Err(e) => -(e.duration().as_secs_f64() / 86_400.0),
    }
}

fn expiry_status(t: SystemTime, now: SystemTime) -> Status {
    if t <= now {
        Status::Fail
    } else if t.duration_since(now).unwrap_or_default() < WARN_BEFORE {
        Status::Warn
    } else {
        Status::Ok
    }
}

/// Runs every check.
pub async fn run(opts: &Options) -> Report {
    let mut report = Report::default();
    let now = SystemTime::now();

    // 1. Anchors and issuer.
    let pems = match &opts.identity_dir {
        Some(dir) => read_dir(dir, &mut report),
        None => {
            let anchors = get_text(&opts.admin, "/identity/trust-anchors.pem").await;
            let issuer = get_text(&opts.admin, "/identity/issuer.pem").await;
            match (anchors, issuer) {
                (Ok(a), Ok(i)) if !a.is_empty() && !i.is_empty() => Some((a, i)),
                (Ok(_), Ok(_)) => {
                    report.push(Status::Fail, "the controller has no valid issuer loaded");
                    None
                }
                (Err(e), _) | (_, Err(e)) => {
                    report.push(Status::Fail, format!("cannot read the identity certificates from the controller: {e} (is its identity service on? or pass --identity-dir)"));
                    None
                }
            }
        }
    };
    let identity =
        pems.and_then(
            |(anchors_pem, issuer_pem)| match check_chain(&anchors_pem, &issuer_pem) {
                Ok((_, chain, info)) => {
                    report_expiry(&mut report, &info, now);
                    let anchors = TrustAnchors::from_pem(&anchors_pem).ok()?;
                    Some((anchors, chain[0].clone()))
                }
                Err(e) => {
                    report.push(Status::Fail, format!("issuer: {e}"));
                    None
                }
            },
        );

    // 2. The controller.
    match get_text(&opts.admin, "/ready").await {
        Ok(_) => report.push(
            Status::Ok,
            format!("controller admin {} is ready", opts.admin),
        ),
        Err(e) => report.push(Status::Fail, format!("controller admin: {e}")),
    }
    match grpc_answers(&opts.controller, opts.timeout).await {
        Ok(()) => report.push(
            Status::Ok,
            format!("controller gRPC {} answers", opts.controller),
        ),
        Err(e) => report.push(Status::Fail, format!("controller gRPC: {e}")),
    }

    // 3. The proxies.
    let Some((anchors, issuer)) = identity else {
        return report;
    };
    let listing = match get_text(&opts.admin, "/meshed-endpoints").await {
        Ok(text) => text,
        Err(e) => {
            report.push(Status::Fail, format!("cannot list the meshed proxies: {e}"));
            return report;
        }
    };
    let proxies = parse_listing(&listing);
    if proxies.is_empty() {
        report.push(Status::Warn, "the controller knows no meshed proxy yet");
    }
    for p in proxies {
        let (status, line) = check_proxy(&p, &anchors, &issuer, now, opts.timeout).await;
        report.push(status, line);
    }
    report
}

fn read_dir(dir: &std::path::Path, report: &mut Report) -> Option<(String, String)> {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f)).map_err(|e| format!("{}: {e}", dir.join(f).display()))
    };
    match (read("ca.crt"), read("tls.crt"), read("tls.key")) {
        (Ok(a), Ok(c), Ok(k)) => match Issuer::from_pem(&a, &c, &k) {
            Ok(_) => {
                report.push(
                    Status::Ok,
                    format!("issuer key in {} matches its certificate", dir.display()),
                );
                Some((a, c))
            }
            Err(e) => {
                report.push(Status::Fail, format!("issuer in {}: {e}", dir.display()));
                None
            }
        },
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            report.push(Status::Fail, format!("cannot read the issuer: {e}"));
            None
        }
    }
}

fn report_expiry(report: &mut Report, info: &IssuerInfo, now: SystemTime) {
    report.push(
        expiry_status(info.anchor_not_after, now),
        format!(
            "trust anchor is valid for {:.0} more days",
            days_left(info.anchor_not_after, now)
        ),
    );
    report.push(
        expiry_status(info.not_after, now),
        format!(
            "issuer {} is a CA signed by the trust anchor, valid for {:.0} more days",
            info.subject,
            days_left(info.not_after, now)
        ),
    );
}

async fn grpc_answers(controller: &str, timeout: Duration) -> Result<(), String> {
    let discovery = conduit_discovery::Discovery::new(controller, "conduit-check")
        .map_err(|e| e.to_string())?;
    let mut resolved = discovery.resolve("conduit-check.invalid.svc.cluster.local:1");
    tokio::time::timeout(timeout, async {
        while matches!(resolved.update(), conduit_discovery::Resolution::Pending) {
            resolved.changed().await;
        }
    })
    .await
    .map_err(|_| format!("no answer from {controller} within {timeout:?}"))
}

/// One meshed proxy from `/meshed-endpoints`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    /// Its inbound address.
    pub addr: SocketAddr,
    /// Its identity.
    pub identity: String,
    /// Its labels (`pod`, `workload`...).
    pub labels: Vec<(String, String)>,
}

impl Proxy {
    /// A label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads the controller's `/meshed-endpoints` lines; malformed ones are skipped.
pub fn parse_listing(text: &str) -> Vec<Proxy> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let addr = parts.next()?.parse().ok()?;
            let identity = parts.next()?.to_string();
            let labels = parts
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Some(Proxy {
                addr,
                identity,
                labels,
            })
        })
        .collect()
}

/// The chain `proxy` serves, checked by a TLS handshake for its identity.
pub async fn served(
    proxy: &Proxy,
    anchors: &TrustAnchors,
    timeout: Duration,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let name =
        Name::parse(&proxy.identity).map_err(|e| format!("identity {:?}: {e}", proxy.identity))?;
    match conduit_tls::within(
        timeout,
        conduit_tls::served_chain(proxy.addr, &name, anchors),
    )
    .await
    {
        Ok(chain) if !chain.is_empty() => Ok(chain),
        Ok(_) => Err("served no certificate".into()),
        Err(e) => Err(e.to_string()),
    }
}

async fn check_proxy(
    p: &Proxy,
    anchors: &TrustAnchors,
    issuer: &CertificateDer<'static>,
    now: SystemTime,
    timeout: Duration,
) -> (Status, String) {
    let who = match p.label("pod") {
        Some(pod) => format!("proxy {pod} ({})", p.addr),
        None => format!("proxy {}", p.addr),
    };
    let chain = match served(p, anchors, timeout).await {
        Ok(chain) => chain,
        Err(e) => return (Status::Fail, format!("{who}: {e}")),
    };
    if chain.get(1) != Some(issuer) {
        return (
            Status::Fail,
            format!(
                "{who}: serves {} from an issuer other than the current one (not yet renewed?)",
                p.identity
            ),
        );
    }
    let expiry = conduit_identity::not_after(&chain[0]).unwrap_or(now);
    let left = expiry.duration_since(now).unwrap_or_default();
    (
        Status::Ok,
        format!(
            "{who} is ready with a certificate for {} from the current issuer, valid for {}",
            p.identity,
            humantime::format_duration(Duration::from_secs(left.as_secs()))
        ),
    )
}
