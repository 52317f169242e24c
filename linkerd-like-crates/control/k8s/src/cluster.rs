//! What the watchers have seen, and its reduction into the index.
//!
//! [`Cluster`] keeps the objects each watcher reported and, whenever one changes, recomputes
//! the services it touches with [`service_model`] and writes them to the index. Relists are
//! applied atomically: a watcher's `Init` starts a buffer, `InitDone` swaps it in, so a
//! restart never shows a service as briefly gone.
//!
//! Endpoint conditions follow Kubernetes' semantics: an endpoint is used when it is `ready`
//! (an absent condition counts as ready); when a port has no ready endpoint at all, the ones
//! still `serving` while `terminating` are used, as kube-proxy does, so a rollout that
//! terminates every old pod at once keeps answering until the new ones are ready.

use crate::crd::ServiceProfile;
use crate::objects::{key_of, Changed, Objects};
use conduit_control_destination::model::{
    self, Endpoint, Port, ProtocolHint, ServiceKey, DEFAULT_INBOUND_PORT, DEFAULT_TAP_PORT,
};
use conduit_control_destination::Index;
use conduit_identity::{Domain, Workload};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

/// The label that ties an EndpointSlice to its service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The container the injector adds: a pod with it is meshed.
pub const PROXY_CONTAINER: &str = "conduit-proxy";

/// What the index needs of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    /// Its identity, when it has a proxy.
    pub identity: Option<String>,
    /// Its workload (the Deployment, StatefulSet... that owns it), if known.
    pub workload: Option<String>,
}

impl PodInfo {
    /// Reads a pod.
    pub fn of(pod: &Pod, identities: &Domain) -> Self {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let spec = pod.spec.as_ref();
        let meshed = spec.is_some_and(|s| s.containers.iter().any(|c| c.name == PROXY_CONTAINER));
        let sa = spec
            .and_then(|s| s.service_account_name.as_deref())
            .unwrap_or("default");
        let workload = pod.metadata.owner_references.as_ref().and_then(|owners| {
            let owner = owners.iter().find(|o| o.controller == Some(true))?;
            // A Deployment's pods are owned by a ReplicaSet named `<deployment>-<hash>`.
            let hash = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("pod-template-hash"));
            Some(match (owner.kind.as_str(), hash) {
                ("ReplicaSet", Some(hash)) => owner
                    .name
                    .strip_suffix(&format!("-{hash}"))
                    .unwrap_or(&owner.name)
                    .to_string(),
                _ => owner.name.clone(),
            })
        });
        PodInfo {
            identity: meshed
                .then(|| {
                    identities.name(&Workload {
                        service_account: sa.into(),
                        namespace: namespace.into(),
                    })
                })
                .and_then(Result::ok)
                .map(|name| name.to_string()),
            workload,
        }
    }
}

/// A pod as tap and the Stats API reach it: a meshed pod with an IP.
fn meshed_pod(key: &(String, String), pod: &Pod, info: &PodInfo) -> Option<model::MeshedPod> {
    let identity = info.identity.clone()?;
    let ip = pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
    let mut labels = BTreeMap::from([
        ("namespace".to_string(), key.0.clone()),
        ("pod".to_string(), key.1.clone()),
    ]);
    if let Some(workload) = &info.workload {
        labels.insert("workload".into(), workload.clone());
    }
    Some(model::MeshedPod {
        ip,
        identity,
        labels,
        tap_port: DEFAULT_TAP_PORT,
    })
}

/// Reduces one Service and its EndpointSlices to the index's model; `None` for a service the
/// mesh cannot route (headless with no ports, say, or an ExternalName).
pub fn service_model(
    svc: &Service,
    slices: &[&EndpointSlice],
    pods: &HashMap<(String, String), PodInfo>,
) -> Option<model::Service> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let namespace = svc
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let cluster_ips = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .fold(Vec::new(), |mut ips, ip| {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
            ips
        });
    let opaque_ports: Vec<u16> = svc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("config.conduit.io/opaque-ports"))
        .map(|v| v.split(',').filter_map(|p| p.trim().parse().ok()).collect())
        .unwrap_or_default();
    let mut ports = BTreeMap::new();
    for sp in spec.ports.iter().flatten() {
        let Ok(port) = u16::try_from(sp.port) else {
            continue;
        };
        let mut ready = BTreeMap::new();
        let mut serving = BTreeMap::new();
        for slice in slices {
            // The slice's port for this service port: matched by name (unnamed when the
            // service has a single port).
            let Some(target) = slice
                .ports
                .iter()
                .flatten()
                .find(|p| p.name == sp.name)
                .and_then(|p| p.port)
            else {
                continue;
            };
            let Ok(target) = u16::try_from(target) else {
                continue;
            };
            for ep in &slice.endpoints {
                let conditions = ep.conditions.as_ref();
                let is_ready = conditions.and_then(|c| c.ready).unwrap_or(true);
                let is_serving = conditions.and_then(|c| c.serving).unwrap_or(is_ready);
                if !is_ready && !is_serving {
                    continue;
                }
                let pod = ep
                    .target_ref
                    .as_ref()
                    .filter(|r| r.kind.as_deref() == Some("Pod"))
                    .and_then(|r| r.name.clone());
                let info = pod
                    .as_ref()
                    .and_then(|name| pods.get(&(namespace.clone(), name.clone())));
                for ip in &ep.addresses {
                    let Ok(ip) = ip.parse::<IpAddr>() else {
                        continue;
                    };
                    let addr = std::net::SocketAddr::new(ip, target);
                    let mut labels = BTreeMap::from([("namespace".to_string(), namespace.clone())]);
                    if let Some(pod) = &pod {
                        labels.insert("pod".into(), pod.clone());
                    }
                    if let Some(workload) = info.and_then(|i| i.workload.clone()) {
                        labels.insert("workload".into(), workload);
                    }
                    let identity = info.and_then(|i| i.identity.clone());
                    let endpoint = Endpoint {
                        // An injected proxy's inbound port: where opaque TCP goes.
                        inbound_port: identity.as_ref().map(|_| DEFAULT_INBOUND_PORT),
                        addr,
                        weight: 1,
                        protocol: if identity.is_some() {
                            ProtocolHint::H2
                        } else {
                            ProtocolHint::Unknown
                        },
                        identity,
                        labels,
                        tap_port: DEFAULT_TAP_PORT,
                    };
                    if is_ready {
                        ready.insert(addr, endpoint);
                    } else {
                        serving.insert(addr, endpoint);
                    }
                }
            }
        }
        let endpoints = if ready.is_empty() { serving } else { ready };
        ports.insert(
            port,
            Port {
                endpoints,
                opaque: opaque_ports.contains(&port),
            },
        );
    }
    Some(model::Service { cluster_ips, ports })
}

/// A watch event, reduced to what [`Cluster`] needs.
#[derive(Debug)]
pub enum Event<T> {
    /// Added or changed.
    Apply(T),
    /// Deleted.
    Delete(T),
    /// A relist begins.
    Init,
    /// An object of the relist.
    InitApply(T),
    /// The relist is complete.
    InitDone,
}

impl<T> Event<T> {
    /// The same event, borrowing its object.
    pub fn as_ref(&self) -> Event<&T> {
        match self {
            Event::Apply(t) => Event::Apply(t),
            Event::Delete(t) => Event::Delete(t),
            Event::Init => Event::Init,
            Event::InitApply(t) => Event::InitApply(t),
            Event::InitDone => Event::InitDone,
        }
    }
}

impl<T> From<kube::runtime::watcher::Event<T>> for Event<T> {
    fn from(e: kube::runtime::watcher::Event<T>) -> Self {
        use kube::runtime::watcher::Event as E;
        match e {
            E::Apply(t) => Event::Apply(t),
            E::Delete(t) => Event::Delete(t),
            E::Init => Event::Init,
            E::InitApply(t) => Event::InitApply(t),
            E::InitDone => Event::InitDone,
        }
    }
}

/// Everything the watchers reported, and the index it keeps up to date.
#[derive(Debug)]
pub struct Cluster {
    index: Arc<Index>,
    identities: Domain,
    services: Objects<Service>,
    slices: Objects<EndpointSlice>,
    pods: Objects<Pod>,
    pod_info: HashMap<(String, String), PodInfo>,
    profiles: Objects<ServiceProfile>,
    /// The profile names set in the index, so a relist can delete the ones gone meanwhile.
    profile_names: std::collections::HashSet<String>,
}

impl Cluster {
    /// Writes into `index`.
    pub fn new(index: Arc<Index>, identities: Domain) -> Self {
        Self {
            index,
            identities,
            services: Objects::default(),
            slices: Objects::default(),
            pods: Objects::default(),
            pod_info: HashMap::new(),
            profiles: Objects::default(),
            profile_names: std::collections::HashSet::new(),
        }
    }

    /// A Service event.
    pub fn service(&mut self, event: Event<Service>) {
        match self.services.apply(event, |s| (key_of(&s.metadata), s)) {
            Changed::None => {}
            Changed::One(key) => self.recompute(&ServiceKey::new(key.0, key.1)),
            Changed::All => self.recompute_all(),
        }
    }

    /// An EndpointSlice event.
    pub fn slice(&mut self, event: Event<EndpointSlice>) {
        let service = match &event {
            Event::Apply(s) | Event::Delete(s) => service_of_slice(s),
            _ => None,
        };
        match self.slices.apply(event, |s| (key_of(&s.metadata), s)) {
            Changed::None => {}
            Changed::One(_) => {
                if let Some(key) = service {
                    self.recompute(&key);
                }
            }
            Changed::All => self.recompute_all(),
        }
    }

    /// A Pod event.
    pub fn pod(&mut self, event: Event<Pod>) {
        match self.pods.apply(event, |p| (key_of(&p.metadata), p)) {
            Changed::None => {}
            Changed::One(key) => {
                let info = self
                    .pods
                    .live
                    .get(&key)
                    .map(|p| PodInfo::of(p, &self.identities));
                let meshed = self
                    .pods
                    .live
                    .get(&key)
                    .zip(info.as_ref())
                    .and_then(|(p, i)| meshed_pod(&key, p, i));
                self.index.set_meshed_pod(&key.0, &key.1, meshed);
                let changed = match info {
                    Some(info) => self.pod_info.insert(key.clone(), info.clone()) != Some(info),
                    None => self.pod_info.remove(&key).is_some(),
                };
                if changed {
                    // The services whose slices name this pod.
                    let affected: Vec<ServiceKey> = self
                        .slices
                        .live
                        .values()
                        .filter(|s| {
                            s.metadata.namespace.as_deref() == Some(key.0.as_str())
                                && s.endpoints.iter().any(|e| {
                                    e.target_ref.as_ref().and_then(|r| r.name.as_deref())
                                        == Some(key.1.as_str())
                                })
                        })
                        .filter_map(service_of_slice)
                        .collect();
                    for svc in affected {
                        self.recompute(&svc);
                    }
                }
            }
            Changed::All => {
                self.pod_info = self
                    .pods
                    .live
                    .iter()
                    .map(|(k, p)| (k.clone(), PodInfo::of(p, &self.identities)))
                    .collect();
                let meshed = self
                    .pods
                    .live
                    .iter()
                    .filter_map(|(k, p)| {
                        let pod = meshed_pod(k, p, self.pod_info.get(k)?)?;
                        Some((k.clone(), pod))
                    })
                    .collect();
                self.index.replace_meshed_pods(meshed);
                self.recompute_all();
            }
        }
    }

    /// A ServiceProfile event.
    pub fn profile(&mut self, event: Event<ServiceProfile>) {
        match self.profiles.apply(event, |p| (key_of(&p.metadata), p)) {
            Changed::None => {}
            Changed::One(key) => self.apply_profile(&key),
            Changed::All => {
                // Profiles gone from the relist are deleted; the rest are set again.
                let live: std::collections::HashSet<String> = self
                    .profiles
                    .live
                    .keys()
                    .map(|(_, name)| name.clone())
                    .collect();
                let gone: Vec<String> = self.profile_names.difference(&live).cloned().collect();
                for fqdn in gone {
                    self.index.set_profile(&fqdn, None);
                    self.profile_names.remove(&fqdn);
                }
                let keys: Vec<_> = self.profiles.live.keys().cloned().collect();
                for key in keys {
                    self.apply_profile(&key);
                }
            }
        }
    }

    fn apply_profile(&mut self, key: &(String, String)) {
        let fqdn = key.1.clone();
        let profile = match self.profiles.live.get(key) {
            Some(sp) => match sp.spec.to_profile().to_api() {
                Ok(profile) => Some(profile),
                Err(error) => {
                    tracing::warn!(namespace = %key.0, name = %key.1, %error, "ignoring an invalid ServiceProfile");
                    None
                }
            },
            None => None,
        };
        if profile.is_some() {
            self.profile_names.insert(fqdn.clone());
        } else {
            self.profile_names.remove(&fqdn);
        }
        self.index.set_profile(&fqdn, profile);
    }

    fn recompute(&self, key: &ServiceKey) {
        let svc = self
            .services
            .live
            .get(&(key.namespace.clone(), key.name.clone()));
        let model = svc.and_then(|svc| {
            let slices: Vec<&EndpointSlice> = self
                .slices
                .live
                .values()
                .filter(|s| service_of_slice(s).as_ref() == Some(key))
                .collect();
            service_model(svc, &slices, &self.pod_info)
        });
        self.index.set_service(key.clone(), model);
    }

    fn recompute_all(&self) {
        let mut keys: Vec<ServiceKey> = self
            .services
            .live
            .keys()
            .map(|(ns, name)| ServiceKey::new(ns.clone(), name.clone()))
            .collect();
        // Services the index has but the cluster no longer does.
        for known in self.index.services() {
            if !keys.contains(&known) {
                keys.push(known);
            }
        }
        for key in keys {
            self.recompute(&key);
        }
    }
}

fn service_of_slice(slice: &EndpointSlice) -> Option<ServiceKey> {
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    let ns = slice
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    Some(ServiceKey::new(ns, name.clone()))
}
