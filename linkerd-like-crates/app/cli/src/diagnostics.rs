//! `conduit diagnostics endpoints <authority>`: what the controller returns for a name.

use conduit_discovery::{Discovery, Resolution};
use std::fmt::Write as _;
use std::time::Duration;

/// Why the endpoints could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum DiagnosticsError {
    /// The controller's address is not usable.
    #[error(transparent)]
    Address(#[from] conduit_discovery::InvalidControllerAddr),
    /// No answer in time.
    #[error("no answer from the controller at {0} within {1:?} (is it running? try --controller)")]
    NoAnswer(String, Duration),
}

/// Asks the controller at `controller` for `authority`'s endpoints and renders them as a table.
pub async fn endpoints(
    controller: &str,
    authority: &str,
    timeout: Duration,
) -> Result<String, DiagnosticsError> {
    let discovery = Discovery::new(controller, "conduit-cli")?;
    let mut resolved = discovery.resolve(authority);
    let first = tokio::time::timeout(timeout, async {
        loop {
            match resolved.update() {
                Resolution::Pending => resolved.changed().await,
                other => return other,
            }
        }
    })
    .await
    .map_err(|_| DiagnosticsError::NoAnswer(controller.to_string(), timeout))?;
    // A large service's first answer comes in several messages: take what arrives shortly after.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let resolution = match resolved.update() {
        Resolution::Pending => first,
        latest => latest,
    };
    Ok(render(authority, &resolution))
}

/// The table for one resolution.
pub fn render(authority: &str, resolution: &Resolution) -> String {
    let set = match resolution {
        Resolution::Known(set) if !set.is_empty() => set,
        Resolution::Known(_) => return format!("{authority}: the service exists but has no endpoints\n"),
        Resolution::Unknown | Resolution::Pending => {
            return format!("{authority}: not a service the controller knows (proxies fall back to DNS or the original destination)\n")
        }
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:>6} {:<20} {:<14} {:>6}  IDENTITY",
        "IP", "PORT", "POD", "WORKLOAD", "WEIGHT"
    );
    for (addr, meta) in set.iter() {
        let label = |k: &str| meta.labels.get(k).map_or("-", String::as_str).to_string();
        let _ = writeln!(
            out,
            "{:<16} {:>6} {:<20} {:<14} {:>6}  {}",
            addr.ip(),
            addr.port(),
            label("pod"),
            label("workload"),
            meta.weight,
            meta.identity.as_deref().unwrap_or("-"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_discovery::EndpointMeta;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    #[test]
    fn renders_one_row_per_endpoint_and_says_when_there_are_none() {
        let mut meta = EndpointMeta {
            weight: 1,
            ..Default::default()
        };
        meta.labels.insert("pod".into(), "books-0".into());
        let set = BTreeMap::from([("127.0.1.2:4143".parse().unwrap(), meta)]);
        let table = render("books:7001", &Resolution::Known(Arc::new(set)));
        let row = table.lines().nth(1).unwrap();
        assert!(
            row.starts_with("127.0.1.2") && row.contains("books-0"),
            "{table}"
        );
        assert!(render("x:80", &Resolution::Known(Arc::default())).contains("no endpoints"));
        assert!(render("x:80", &Resolution::Unknown).contains("not a service"));
    }
}
