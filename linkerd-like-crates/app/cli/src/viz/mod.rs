//! The observability commands: `stat`, `routes`, `edges` (the controller's Stats API) and
//! `tap`, `top` (its TapByResource API). Each renders what the controller answers as a
//! table, or as JSON (`-o json`) for scripts.

pub mod edges;
pub mod routes;
pub mod stat;
pub mod tap;
pub mod top;

use conduit_api::tap::Resource;
use conduit_control_viz::Kind;
use std::time::Duration;

/// Why a command could not answer.
#[derive(Debug, thiserror::Error)]
pub enum VizError {
    /// A resource argument is not understood.
    #[error("{0}")]
    Usage(String),
    /// The controller's address is not usable.
    #[error(transparent)]
    Address(#[from] conduit_discovery::InvalidControllerAddr),
    /// The controller refused or failed.
    #[error("the controller at {addr}: {message}")]
    Controller {
        /// Where.
        addr: String,
        /// What it said.
        message: String,
    },
}

impl VizError {
    fn controller(addr: &str, status: tonic::Status) -> Self {
        let message = match status.code() {
            tonic::Code::Unavailable => format!(
                "unreachable ({}); is it running? try --controller",
                status.message()
            ),
            _ => status.message().to_string(),
        };
        VizError::Controller {
            addr: addr.to_string(),
            message,
        }
    }
}

/// How to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Aligned columns.
    Table,
    /// Aligned columns, with more of them.
    Wide,
    /// One JSON document (`stat`, `routes`, `edges`) or one JSON object per line (`tap`).
    Json,
}

impl std::str::FromStr for Output {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(Output::Table),
            "wide" => Ok(Output::Wide),
            "json" => Ok(Output::Json),
            _ => Err(format!("{s:?}: use table, wide or json")),
        }
    }
}

/// A resource from the command line: `deploy/web`, `deploy web`, `deploy` (all of them),
/// `ns/demo`; in `namespace` (`None`: every namespace).
pub fn resource(words: &[String], namespace: Option<&str>) -> Result<Resource, VizError> {
    let (kind, name) = match words {
        [one] => match one.split_once('/') {
            Some((kind, name)) => (kind, name),
            None => (one.as_str(), ""),
        },
        [kind, name] => (kind.as_str(), name.as_str()),
        _ => {
            return Err(VizError::Usage(
                "name a resource: <kind>[/<name>] or <kind> <name>".into(),
            ))
        }
    };
    let kind = Kind::parse(kind).ok_or_else(|| {
        VizError::Usage(format!(
            "{kind:?} is not a kind: use deploy, pod, svc, ns (or their long names)"
        ))
    })?;
    if name.contains('/') {
        return Err(VizError::Usage(format!("{name:?}: one name, without /")));
    }
    Ok(Resource {
        namespace: match kind {
            Kind::Namespace if !name.is_empty() => name.to_string(),
            _ => namespace.unwrap_or_default().to_string(),
        },
        kind: kind.as_str().to_string(),
        name: name.to_string(),
    })
}

/// A resource named by one word (`--from deploy/web`).
pub fn resource_arg(word: &str, namespace: Option<&str>) -> Result<Resource, VizError> {
    resource(&[word.to_string()], namespace)
}

/// `kind/name`, as `kubectl` prints it.
pub fn display(r: &Resource) -> String {
    let kind = match Kind::parse(&r.kind) {
        Some(Kind::Deployment) => "deploy",
        Some(Kind::Pod) => "po",
        Some(Kind::Service) => "svc",
        Some(Kind::Namespace) => "ns",
        _ => r.kind.as_str(),
    };
    format!("{kind}/{}", r.name)
}

/// A latency in microseconds, for a table: `0.42ms`, `12.3ms`, `210ms`.
pub fn latency(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms < 10.0 {
        format!("{ms:.2}ms")
    } else if ms < 100.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{ms:.0}ms")
    }
}

/// The gRPC channel to the controller at `addr` (`host:port`); plaintext, as for every
/// client tool.
pub fn channel(addr: &str) -> Result<tonic::transport::Channel, VizError> {
    Ok(conduit_discovery::controller_endpoint(addr)?.connect_lazy())
}

/// A window as the API takes it.
pub fn window(d: Duration) -> Option<prost_types::Duration> {
    prost_types::Duration::try_from(d).ok()
}

/// A row's golden figures as table cells: SUCCESS, RPS, P50, P95, P99 (`-` without traffic).
pub fn golden_cells(g: Option<&conduit_api::stats::Golden>) -> [String; 5] {
    match g.filter(|g| g.requests > 0) {
        None => ["-", "-", "-", "-", "-"].map(String::from),
        Some(g) => [
            format!("{:.2}%", 100.0 * g.successes as f64 / g.requests as f64),
            format!("{:.1}rps", g.rps),
            latency(g.p50_us),
            latency(g.p95_us),
            latency(g.p99_us),
        ],
    }
}

/// Renders rows as left-aligned columns (the first) and right-aligned ones (the rest),
/// two spaces apart.
pub fn columns(header: &[&str], rows: &[Vec<String>], left: usize) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            if i < left {
                s.push_str(&format!("{cell:<w$}"));
            } else {
                s.push_str(&format!("{cell:>w$}"));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn resources_read_as_kubectl_writes_them() {
        let r = resource(&words("deploy/web"), Some("demo")).unwrap();
        assert_eq!(
            (r.kind.as_str(), r.name.as_str(), r.namespace.as_str()),
            ("deployment", "web", "demo")
        );
        let r = resource(&words("svc books"), None).unwrap();
        assert_eq!(
            (r.kind.as_str(), r.name.as_str(), r.namespace.as_str()),
            ("service", "books", "")
        );
        let r = resource(&words("ns/demo"), Some("default")).unwrap();
        assert_eq!(
            (r.kind.as_str(), r.namespace.as_str()),
            ("namespace", "demo")
        );
        let r = resource(&words("pods"), Some("demo")).unwrap();
        assert_eq!((r.kind.as_str(), r.name.as_str()), ("pod", ""));
        assert!(resource(&words("replicaset/x"), None).is_err());
        assert!(resource(&words("deploy/a/b"), None).is_err());
        assert!(resource(&[], None).is_err());
        assert_eq!(
            display(&resource(&words("deploy/web"), None).unwrap()),
            "deploy/web"
        );
    }

    #[test]
    fn latencies_keep_three_figures() {
        assert_eq!(latency(420), "0.42ms");
        assert_eq!(latency(12_345), "12.3ms");
        assert_eq!(latency(210_400), "210ms");
    }

    #[test]
    fn columns_align() {
        let t = columns(
            &["NAME", "RPS"],
            &[vec!["books".into(), "1.0rps".into()]],
            1,
        );
        assert_eq!(t, "NAME      RPS\nbooks  1.0rps\n");
    }
}
