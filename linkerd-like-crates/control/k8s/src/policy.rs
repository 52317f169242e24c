//! Policy resources from the cluster into the policy index: Servers, AuthorizationPolicies,
//! and what the index needs of pods (labels, and a default-policy annotation).

use crate::cluster::Event;
use crate::objects::{key_of, Changed, Objects};
use conduit_control_policy::{
    AuthorizationPolicy, AuthorizationPolicySpec, Key, PodSpec, PolicyIndex, PolicyState, Server,
    ServerSpec,
};
use conduit_policy::DefaultPolicy;
use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The annotation by which a pod (usually through its template) sets its own default policy.
pub const DEFAULT_POLICY_ANNOTATION: &str = "config.conduit.io/default-inbound-policy";

/// Applies `changed` in `objects` to the index's map chosen by `map`.
fn publish<T: Clone + Send + 'static>(
    index: &PolicyIndex,
    objects: &Objects<T>,
    changed: Changed,
    map: fn(&mut PolicyState) -> &mut BTreeMap<Key, T>,
) {
    match changed {
        Changed::None => {}
        Changed::One(k) => {
            let value = objects.live.get(&k).cloned();
            index.update(|s| match value {
                Some(v) => {
                    map(s).insert(k, v);
                }
                None => {
                    map(s).remove(&k);
                }
            });
        }
        Changed::All => {
            let all: BTreeMap<Key, T> = objects
                .live
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            index.update(|s| *map(s) = all);
        }
    }
}

/// Keeps the policy index equal to the cluster's policy resources.
#[derive(Debug)]
pub struct PolicyCluster {
    index: Arc<PolicyIndex>,
    servers: Objects<ServerSpec>,
    authorizations: Objects<AuthorizationPolicySpec>,
    pods: Objects<PodSpec>,
}

impl PolicyCluster {
    /// Feeding `index`.
    pub fn new(index: Arc<PolicyIndex>) -> Self {
        Self {
            index,
            servers: Objects::default(),
            authorizations: Objects::default(),
            pods: Objects::default(),
        }
    }

    /// A Server event.
    pub fn server(&mut self, event: Event<Server>) {
        if let Some(Event::Apply(s) | Event::InitApply(s)) = Some(&event) {
            if let Err(error) = s.spec.protocol() {
                tracing::warn!(name = ?s.metadata.name, %error, "Server has an invalid protocol; it detects");
            }
        }
        let changed = self.servers.apply(event, |s| (key_of(&s.metadata), s.spec));
        publish(&self.index, &self.servers, changed, |s| &mut s.servers);
    }

    /// An AuthorizationPolicy event.
    pub fn authorization(&mut self, event: Event<AuthorizationPolicy>) {
        let changed = self
            .authorizations
            .apply(event, |a| (key_of(&a.metadata), a.spec));
        publish(&self.index, &self.authorizations, changed, |s| {
            &mut s.authorizations
        });
    }

    /// A Pod event (its labels and annotation only).
    pub fn pod(&mut self, event: Event<&Pod>) {
        // Pods change often (their status); only their labels and annotation matter here.
        if let Event::Apply(pod) = &event {
            if self.pods.live.get(&key_of(&pod.metadata)) == Some(&pod_spec(pod)) {
                return;
            }
        }
        let changed = self
            .pods
            .apply(event, |p| (key_of(&p.metadata), pod_spec(p)));
        publish(&self.index, &self.pods, changed, |s| &mut s.pods);
    }
}

/// What policy needs of a pod.
pub fn pod_spec(pod: &Pod) -> PodSpec {
    let meta = &pod.metadata;
    let default_policy = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_POLICY_ANNOTATION))
        .and_then(|v| match v.parse::<DefaultPolicy>() {
            Ok(p) => Some(p),
            Err(error) => {
                tracing::warn!(pod = ?meta.name, %error, "ignoring an invalid default-policy annotation");
                None
            }
        });
    PodSpec {
        labels: meta.labels.clone().unwrap_or_default(),
        default_policy,
    }
}
