//! Policy resources from the cluster into the policy index: Servers, AuthorizationPolicies,
//! and what the index needs of pods (labels, and a default-policy annotation).

use crate::cluster::Event;
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

/// One kind's objects, with atomic relists: a relist is gathered whole, then swapped in, so
/// the index never sees a half-listed cluster.
#[derive(Debug)]
struct Kind<T> {
    live: BTreeMap<Key, T>,
    relisting: Option<BTreeMap<Key, T>>,
}

impl<T> Default for Kind<T> {
    fn default() -> Self {
        Self {
            live: BTreeMap::new(),
            relisting: None,
        }
    }
}

/// What an event changed.
enum Change<T> {
    None,
    /// One object, now this (or gone).
    One(Key, Option<T>),
    /// All of them (a relist ended).
    All(BTreeMap<Key, T>),
}

impl<T: Clone + PartialEq> Kind<T> {
    /// Applies an event whose object is reduced to `(key, value)`.
    fn apply<O>(&mut self, event: Event<O>, reduce: impl Fn(O) -> (Key, T)) -> Change<T> {
        match event {
            Event::Apply(o) => {
                let (k, v) = reduce(o);
                match self.live.insert(k.clone(), v.clone()) {
                    Some(old) if old == v => Change::None,
                    _ => Change::One(k, Some(v)),
                }
            }
            Event::Delete(o) => {
                let (k, _) = reduce(o);
                match self.live.remove(&k) {
                    Some(_) => Change::One(k, None),
                    None => Change::None,
                }
            }
            Event::Init => {
                self.relisting = Some(BTreeMap::new());
                Change::None
            }
            Event::InitApply(o) => {
                let (k, v) = reduce(o);
                self.relisting
                    .get_or_insert_with(BTreeMap::new)
                    .insert(k, v);
                Change::None
            }
            Event::InitDone => {
                if let Some(relisted) = self.relisting.take() {
                    self.live = relisted;
                }
                Change::All(self.live.clone())
            }
        }
    }
}

/// Applies `change` to the index's map chosen by `map`.
fn publish<T: Send + 'static>(
    index: &PolicyIndex,
    change: Change<T>,
    map: fn(&mut PolicyState) -> &mut BTreeMap<Key, T>,
) {
    match change {
        Change::None => {}
        Change::One(k, Some(v)) => index.update(|s| {
            map(s).insert(k, v);
        }),
        Change::One(k, None) => index.update(|s| {
            map(s).remove(&k);
        }),
        Change::All(all) => index.update(|s| *map(s) = all),
    }
}

fn key(meta: &kube::api::ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Keeps the policy index equal to the cluster's policy resources.
#[derive(Debug)]
pub struct PolicyCluster {
    index: Arc<PolicyIndex>,
    servers: Kind<ServerSpec>,
    authorizations: Kind<AuthorizationPolicySpec>,
    pods: Kind<PodSpec>,
}

impl PolicyCluster {
    /// Feeding `index`.
    pub fn new(index: Arc<PolicyIndex>) -> Self {
        Self {
            index,
            servers: Kind::default(),
            authorizations: Kind::default(),
            pods: Kind::default(),
        }
    }

    /// A Server event.
    pub fn server(&mut self, event: Event<Server>) {
        if let Some(Event::Apply(s) | Event::InitApply(s)) = Some(&event) {
            if let Err(error) = s.spec.protocol() {
                tracing::warn!(name = ?s.metadata.name, %error, "Server has an invalid protocol; it detects");
            }
        }
        let change = self.servers.apply(event, |s| (key(&s.metadata), s.spec));
        publish(&self.index, change, |s| &mut s.servers);
    }

    /// An AuthorizationPolicy event.
    pub fn authorization(&mut self, event: Event<AuthorizationPolicy>) {
        let change = self
            .authorizations
            .apply(event, |a| (key(&a.metadata), a.spec));
        publish(&self.index, change, |s| &mut s.authorizations);
    }

    /// A Pod event (its labels and annotation only).
    pub fn pod(&mut self, event: Event<&Pod>) {
        let change = self.pods.apply(event, |p| (key(&p.metadata), pod_spec(p)));
        publish(&self.index, change, |s| &mut s.pods);
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
