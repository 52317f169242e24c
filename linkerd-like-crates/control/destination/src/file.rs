//! The file registry (`--discovery file:PATH`): services, endpoints and profiles in YAML,
//! watched.
//!
//! ```yaml
//! services:
//!   - name: books
//!     namespace: demo
//!     clusterIPs: [10.96.0.2]          # optional
//!     ports:
//!       - port: 7001
//!         opaque: false                 # optional
//!         endpoints:
//!           - address: 127.0.1.2:7001
//!             weight: 1                 # optional
//!             identity: books.demo.serviceaccount.identity.conduit.cluster.local
//!             protocol: h2              # optional: h2 or opaque
//!             labels: {pod: books-0, workload: books}
//!             tapPort: 4190             # optional: its proxy's tap port
//!             inboundPort: 4143         # optional: its proxy's inbound listener, where other
//!                                       # proxies send it opaque TCP; without it, to `address`
//! pods:                                # meshed pods no service lists (clients), for tap and stats
//!   - name: loadgen-0
//!     namespace: demo
//!     ip: 127.0.1.9
//!     identity: loadgen.demo.serviceaccount.identity.conduit.cluster.local
//!     labels: {workload: loadgen}     # optional; namespace and pod are added
//!     tapPort: 4190                   # optional
//! profiles:
//!   - service: books.demo.svc.cluster.local
//!     routes:
//!       - name: GET /books/{id}
//!         condition: {method: GET, pathRegex: '/books/\d+'}
//!         timeout: 300ms
//! ```
//!
//! The file is read every [`POLL_INTERVAL`], and applied when its contents change, so a change
//! reaches watching proxies well within a second (polling rather than inotify: it works the
//! same for a ConfigMap's symlink swap, an editor's rename and a plain write). A file with an
//! error leaves the last good state in place; the error is logged with its line and reason.

use crate::index::Index;
use crate::model::{
    Endpoint, MeshedPod, Port, ProtocolHint, Service, ServiceKey, DEFAULT_TAP_PORT,
};
use crate::profile::ProfileSpec;
use conduit_api::destination::DestinationProfile;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How often the file is read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Registry {
    #[serde(default)]
    services: Vec<ServiceSpec>,
    #[serde(default)]
    profiles: Vec<ProfileEntry>,
    #[serde(default)]
    pods: Vec<PodSpec>,
    // Read by other sections (the policy service's): see [`Section`].
    #[serde(default, rename = "servers")]
    _servers: serde::de::IgnoredAny,
    #[serde(default, rename = "authorizationPolicies")]
    _authorization_policies: serde::de::IgnoredAny,
    #[serde(default, rename = "workloadDefaults")]
    _workload_defaults: serde::de::IgnoredAny,
}

/// Another index's part of the registry file (the policy service reads `servers`,
/// `authorizationPolicies` and `workloadDefaults`).
pub trait Section: Send + Sync + 'static {
    /// Parses its part of `text` (`path` names the file in errors) and returns how to apply
    /// it: every section parses before any applies, so a file is used whole or not at all.
    fn parse(&self, text: &str, path: &str) -> Result<Box<dyn FnOnce() + Send>, RegistryError>;
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ServiceSpec {
    name: String,
    namespace: String,
    #[serde(default, rename = "clusterIPs")]
    cluster_ips: Vec<IpAddr>,
    #[serde(default)]
    ports: Vec<PortSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PortSpec {
    port: u16,
    #[serde(default)]
    opaque: bool,
    #[serde(default)]
    endpoints: Vec<EndpointSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EndpointSpec {
    address: SocketAddr,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    identity: Option<String>,
    #[serde(default)]
    protocol: Option<Protocol>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    tap_port: Option<u16>,
    #[serde(default)]
    inbound_port: Option<u16>,
}

/// A meshed pod that no service lists (a client), for tap and stats.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PodSpec {
    name: String,
    namespace: String,
    ip: IpAddr,
    identity: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    tap_port: Option<u16>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Protocol {
    H2,
    Opaque,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileEntry {
    service: String,
    #[serde(flatten)]
    spec: ProfileSpec,
}

/// What a registry file holds, ready for [`Index::replace_all`].
#[derive(Debug, Default, PartialEq)]
pub struct State {
    /// Services by key.
    pub services: BTreeMap<ServiceKey, Service>,
    /// Profiles by service FQDN.
    pub profiles: BTreeMap<String, DestinationProfile>,
    /// Meshed pods listed on their own, by namespace and name.
    pub pods: BTreeMap<(String, String), MeshedPod>,
}

/// Why a registry cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Not valid YAML for a registry.
    #[error("{path}: {reason}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message, with the line and column.
        reason: String,
    },
    /// Valid YAML, but not a usable registry.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Parses a registry; `path` names it in errors.
pub fn parse(text: &str, path: &str) -> Result<State, RegistryError> {
    let registry: Registry = if text.trim().is_empty() {
        Registry::default()
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| RegistryError::Syntax {
            path: path.to_string(),
            reason: e.to_string(),
        })?
    };
    let invalid = |reason: String| RegistryError::Invalid {
        path: path.to_string(),
        reason,
    };
    let mut state = State::default();
    for svc in registry.services {
        let key = ServiceKey::new(svc.namespace, svc.name);
        let mut service = Service {
            cluster_ips: svc.cluster_ips,
            ports: BTreeMap::new(),
        };
        for port in svc.ports {
            let mut endpoints = BTreeMap::new();
            for e in port.endpoints {
                let endpoint = Endpoint {
                    addr: e.address,
                    weight: e.weight.unwrap_or(1),
                    labels: e.labels,
                    protocol: match e.protocol {
                        None => ProtocolHint::Unknown,
                        Some(Protocol::H2) => ProtocolHint::H2,
                        Some(Protocol::Opaque) => ProtocolHint::Opaque,
                    },
                    tap_port: e.tap_port.unwrap_or(DEFAULT_TAP_PORT),
                    inbound_port: e.inbound_port,
                    identity: e.identity,
                };
                if endpoints.insert(e.address, endpoint).is_some() {
                    return Err(invalid(format!(
                        "service {key} port {}: endpoint {} is listed twice",
                        port.port, e.address
                    )));
                }
            }
            let entry = Port {
                endpoints,
                opaque: port.opaque,
            };
            if service.ports.insert(port.port, entry).is_some() {
                return Err(invalid(format!(
                    "service {key}: port {} is listed twice",
                    port.port
                )));
            }
        }
        if state.services.insert(key.clone(), service).is_some() {
            return Err(invalid(format!("service {key} is listed twice")));
        }
    }
    let mut seen = BTreeSet::new();
    for entry in registry.profiles {
        let fqdn = entry.service.trim_end_matches('.').to_ascii_lowercase();
        if !seen.insert(fqdn.clone()) {
            return Err(invalid(format!("profile {fqdn} is listed twice")));
        }
        let profile = entry
            .spec
            .to_api()
            .map_err(|e| invalid(format!("profile {fqdn}: {e}")))?;
        state.profiles.insert(fqdn, profile);
    }
    for pod in registry.pods {
        let key = (pod.namespace.clone(), pod.name.clone());
        let mut labels = pod.labels;
        labels.insert("namespace".into(), pod.namespace);
        labels.insert("pod".into(), pod.name);
        let meshed = MeshedPod {
            ip: pod.ip,
            identity: pod.identity,
            labels,
            tap_port: pod.tap_port.unwrap_or(DEFAULT_TAP_PORT),
        };
        if state.pods.insert(key.clone(), meshed).is_some() {
            return Err(invalid(format!("pod {}/{} is listed twice", key.0, key.1)));
        }
    }
    Ok(state)
}

/// Reads `path` into `index` now; an error here is for the caller to report at start-up.
pub async fn load(path: &PathBuf, index: &Index) -> Result<(), RegistryError> {
    load_with(path, index, &[]).await
}

/// [`load`], with other sections of the file.
pub async fn load_with(
    path: &PathBuf,
    index: &Index,
    sections: &[Arc<dyn Section>],
) -> Result<(), RegistryError> {
    let text = read(path).await?;
    apply(&text, path, index, sections)?;
    Ok(())
}

/// Parses every part of `text`, then applies them all; returns the destination state's size.
fn apply(
    text: &str,
    path: &std::path::Path,
    index: &Index,
    sections: &[Arc<dyn Section>],
) -> Result<(usize, usize), RegistryError> {
    let name = path.display().to_string();
    let state = parse(text, &name)?;
    let appliers = sections
        .iter()
        .map(|s| s.parse(text, &name))
        .collect::<Result<Vec<_>, _>>()?;
    let sizes = (state.services.len(), state.profiles.len());
    index.replace_all(state.services, state.profiles);
    index.replace_meshed_pods(state.pods);
    for apply in appliers {
        apply();
    }
    Ok(sizes)
}

async fn read(path: &PathBuf) -> Result<String, RegistryError> {
    tokio::fs::read_to_string(path)
        .await
        .map_err(|source| RegistryError::Read {
            path: path.display().to_string(),
            source,
        })
}

/// Watches `path` forever, applying each good version to `index`; call after [`load`].
pub async fn watch(path: PathBuf, index: Arc<Index>) {
    watch_with(path, index, Vec::new()).await
}

/// [`watch`], with other sections of the file; call after [`load_with`].
pub async fn watch_with(path: PathBuf, index: Arc<Index>, sections: Vec<Arc<dyn Section>>) {
    // Starting from nothing, the first poll applies the file again: a change written between
    // the start-up load and this task's first read is not mistaken for the loaded state.
    // Applying an unchanged registry sends nothing to watchers.
    let mut last: Option<String> = None;
    let mut interval = tokio::time::interval(POLL_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let text = match read(&path).await {
            Ok(text) => text,
            Err(error) => {
                if last.is_some() {
                    tracing::warn!(%error, "registry unreadable; keeping the last good state");
                    last = None;
                }
                continue;
            }
        };
        if last.as_deref() == Some(text.as_str()) {
            continue;
        }
        match apply(&text, &path, &index, &sections) {
            Ok((services, profiles)) => {
                tracing::info!(services, profiles, "registry changed");
            }
            Err(error) => {
                tracing::warn!(%error, "registry has an error; keeping the last good state");
            }
        }
        last = Some(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::View;

    const GOOD: &str = r#"
services:
  - name: books
    namespace: demo
    clusterIPs: [10.96.0.2]
    ports:
      - port: 7001
        endpoints:
          - address: 127.0.1.2:7001
            identity: books.demo.serviceaccount.identity.conduit.cluster.local
            protocol: h2
            labels: {pod: books-0}
            inboundPort: 4143
          - address: 127.0.1.4:7001
            weight: 3
profiles:
  - service: books.demo.svc.cluster.local
    routes:
      - name: GET /books
        condition: {method: GET, pathRegex: /books}
"#;

    #[test]
    fn a_registry_parses_into_services_and_profiles() {
        let state = parse(GOOD, "reg.yaml").unwrap();
        let books = &state.services[&ServiceKey::new("demo", "books")];
        let port = &books.ports[&7001];
        assert_eq!(port.endpoints.len(), 2);
        let first = &port.endpoints[&"127.0.1.2:7001".parse().unwrap()];
        assert_eq!(first.protocol, ProtocolHint::H2);
        assert_eq!(first.inbound_port, Some(4143));
        assert_eq!(
            port.endpoints[&"127.0.1.4:7001".parse().unwrap()].inbound_port,
            None
        );
        assert_eq!(first.labels["pod"], "books-0");
        assert_eq!(port.endpoints[&"127.0.1.4:7001".parse().unwrap()].weight, 3);
        assert_eq!(
            state.profiles["books.demo.svc.cluster.local"].routes[0].name,
            "GET /books"
        );
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_reason() {
        let cases = [
            ("services:\n  - name: a\n    namespace: b\n    portz: []\n", "line 4"),
            (
                "services:\n  - name: a\n    namespace: b\n    ports: [{port: 1, endpoints: [{address: nope}]}]\n",
                "line 4",
            ),
            (
                "services:\n  - {name: a, namespace: b}\n  - {name: a, namespace: b}\n",
                "listed twice",
            ),
            (
                "profiles:\n  - service: a.b.svc.cluster.local\n    routes: [{name: r, condition: {pathRegex: '('}}]\n",
                "invalid regex",
            ),
            (
                "pods:\n  - {name: a, namespace: b, ip: 10.0.0.1, identity: x}\n  - {name: a, namespace: b, ip: 10.0.0.2, identity: x}\n",
                "pod b/a is listed twice",
            ),
            ("pods:\n  - {name: a, namespace: b, ip: nope, identity: x}\n", "line 2"),
        ];
        for (text, want) in cases {
            let err = parse(text, "reg.yaml").unwrap_err().to_string();
            assert!(err.starts_with("reg.yaml: "), "{err}");
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn pods_listed_on_their_own_are_meshed_pods() {
        let state = parse(
            "pods:\n  - {name: loadgen-0, namespace: demo, ip: 10.0.0.9, identity: lg.demo, labels: {workload: loadgen}}\n",
            "reg.yaml",
        )
        .unwrap();
        let pod = &state.pods[&("demo".to_string(), "loadgen-0".to_string())];
        assert_eq!(pod.ip.to_string(), "10.0.0.9");
        assert_eq!(pod.tap_port, DEFAULT_TAP_PORT);
        let labels: Vec<(&str, &str)> = pod
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("namespace", "demo"),
                ("pod", "loadgen-0"),
                ("workload", "loadgen")
            ]
        );
    }

    #[tokio::test]
    async fn the_watch_applies_changes_and_keeps_the_last_good_state_on_errors() {
        let dir = std::env::temp_dir().join(format!("conduit-registry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("registry.yaml");
        std::fs::write(&path, GOOD).unwrap();
        let index = Index::new("cluster.local");
        load(&path, &index).await.unwrap();
        let mut rx = index
            .endpoints("books.demo.svc.cluster.local:7001")
            .unwrap();
        rx.borrow_and_update();
        let watcher = tokio::spawn(watch(path.clone(), index.clone()));

        // A broken file changes nothing.
        std::fs::write(&path, "services: [").unwrap();
        tokio::time::sleep(POLL_INTERVAL * 3).await;
        assert!(!rx.has_changed().unwrap());
        assert_eq!(index.services().len(), 1);

        // A good one is applied within a second.
        std::fs::write(&path, GOOD.replace("127.0.1.4", "127.0.1.5")).unwrap();
        tokio::time::timeout(Duration::from_secs(1), rx.changed())
            .await
            .expect("the change arrives within a second")
            .unwrap();
        let View::Known(set) = &rx.borrow().view else {
            panic!("books is known")
        };
        assert!(set.contains_key(&"127.0.1.5:7001".parse().unwrap()));
        watcher.abort();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
