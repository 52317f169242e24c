use crate::spec::{AuthorizationPolicySpec, ServerSpec};
use conduit_api::policy as api;
use conduit_policy::DefaultPolicy;
use ipnet::IpNet;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::watch;

/// A resource's namespace and name.
pub type Key = (String, String);

/// What the index needs of a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodSpec {
    /// Its labels, for Servers' selectors.
    pub labels: BTreeMap<String, String>,
    /// Its own default policy (annotation `config.conduit.io/default-inbound-policy`), if
    /// it overrides the cluster's.
    pub default_policy: Option<DefaultPolicy>,
}

/// Everything policy is computed from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyState {
    /// Servers by namespace and name.
    pub servers: BTreeMap<Key, ServerSpec>,
    /// AuthorizationPolicies by namespace and name.
    pub authorizations: BTreeMap<Key, AuthorizationPolicySpec>,
    /// Pods by namespace and name.
    pub pods: BTreeMap<Key, PodSpec>,
}

/// A watched port: namespace, pod, port.
type PortKey = (String, String, u16);

/// The policy index: sources write resources in, each watched port's policy is recomputed
/// and sent when it changes. One computation serves every watcher of a port.
#[derive(Debug)]
pub struct PolicyIndex {
    default: DefaultPolicy,
    cluster: Vec<IpNet>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    state: PolicyState,
    watches: HashMap<PortKey, watch::Sender<Arc<api::InboundServer>>>,
    /// Watches kept at the last sweep of unwatched ports: the next sweep comes when the map
    /// has doubled, so clients that come and go cannot grow it without bound, and sweeping
    /// costs O(1) per new watch on average.
    swept_at: usize,
}

impl PolicyIndex {
    /// An empty index; ports no Server selects get `default` (or the pod's own), with
    /// `cluster` as the cluster's networks.
    pub fn new(default: DefaultPolicy, cluster: Vec<IpNet>) -> Arc<Self> {
        Arc::new(Self {
            default,
            cluster,
            inner: Mutex::default(),
        })
    }

    /// The policy of `pod`'s `port`, now and as it changes.
    pub fn watch(
        &self,
        namespace: &str,
        pod: &str,
        port: u16,
    ) -> watch::Receiver<Arc<api::InboundServer>> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (namespace.to_string(), pod.to_string(), port);
        if let Some(tx) = inner.watches.get(&key) {
            return tx.subscribe();
        }
        if inner.watches.len() >= 2 * inner.swept_at.max(64) {
            inner.watches.retain(|_, tx| tx.receiver_count() > 0);
            inner.swept_at = inner.watches.len();
        }
        let policy = Arc::new(self.compute(&inner.state, &key));
        let (tx, rx) = watch::channel(policy);
        inner.watches.insert(key, tx);
        rx
    }

    /// Replaces everything (the file source).
    pub fn replace_all(&self, state: PolicyState) {
        self.update(|s| *s = state);
    }

    /// Changes the state with `f` and sends every watched port whose policy changed.
    pub fn update(&self, f: impl FnOnce(&mut PolicyState)) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut inner.state);
        inner.watches.retain(|_, tx| tx.receiver_count() > 0);
        inner.swept_at = inner.watches.len();
        let Inner { state, watches, .. } = &*inner;
        for (key, tx) in watches {
            let policy = self.compute(state, key);
            tx.send_if_modified(|current| {
                let changed = **current != policy;
                if changed {
                    *current = Arc::new(policy);
                }
                changed
            });
        }
    }

    /// The policy of one port: the first Server (by name) in the pod's namespace that
    /// selects the pod and port, with every AuthorizationPolicy naming it; else the default.
    fn compute(&self, state: &PolicyState, (ns, pod, port): &PortKey) -> api::InboundServer {
        let spec = state.pods.get(&(ns.clone(), pod.clone()));
        let labels = spec.map(|p| &p.labels);
        let server = state.servers.iter().find(|((server_ns, _), server)| {
            server_ns == ns && labels.is_some_and(|l| server.selects(l, *port))
        });
        let Some(((_, server_name), server)) = server else {
            let default = spec.and_then(|p| p.default_policy).unwrap_or(self.default);
            return default.to_api(&self.cluster);
        };
        let protocol = server.protocol().unwrap_or(api::ProxyProtocol::Detect);
        let authorizations = state
            .authorizations
            .iter()
            .filter(|((authz_ns, _), a)| authz_ns == ns && a.server == *server_name)
            .filter_map(|((_, name), a)| match a.to_api(name) {
                Ok(authz) => Some(authz),
                Err(error) => {
                    tracing::warn!(%name, %error, "ignoring an invalid authorization policy");
                    None
                }
            })
            .collect();
        api::InboundServer {
            name: server_name.clone(),
            protocol: protocol as i32,
            authorizations,
        }
    }

    /// Watched ports, for the admin metrics.
    pub fn watched(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .watches
            .len()
    }
}
