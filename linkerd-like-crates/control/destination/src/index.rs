//! The one index of services, endpoints and profiles, and the watches streams read from it.
//!
//! Sources write whole services ([`Index::set_service`], or [`Index::replace_all`] for a
//! registry read at once); readers subscribe to a name and get a `tokio::sync::watch` of its
//! current [`Snapshot`]. A watch keeps only the latest value, so a slow reader is never queued
//! behind and never holds up the writer or other readers: it reads the newest snapshot when it
//! is ready. Each snapshot carries the change from the one before it, so the common reader,
//! one step behind, sends that change without comparing whole endpoint sets; a reader further
//! behind compares what it last sent with the newest set.
//!
//! Many streams for one name share one watch: a change is computed once per name, not per
//! stream. Watches nobody reads are dropped when the index next changes or is subscribed to.

use crate::model::{Endpoint, MeshedPod, Service, ServiceKey};
use conduit_api::destination::DestinationProfile;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::watch;

/// The endpoints of one port, shared by every snapshot that has not changed them.
pub type EndpointSet = Arc<BTreeMap<SocketAddr, Endpoint>>;

/// What a name resolves to right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum View {
    /// The controller does not know the name: the proxy falls back to its own resolution.
    Unknown,
    /// A known service (or pod); the set may be empty.
    Known(EndpointSet),
}

/// A name's state, numbered, with the change from the previous number.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Increases by one with each change of this name's view.
    pub version: u64,
    /// The current view.
    pub view: View,
    /// The change from `version - 1`, when both are known sets.
    pub delta: Option<Delta>,
}

/// A change between two known endpoint sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Endpoints new, or whose metadata changed.
    pub added: Vec<Endpoint>,
    /// Addresses gone.
    pub removed: Vec<SocketAddr>,
}

impl Delta {
    /// What changed from `old` to `new`.
    pub fn between(
        old: &BTreeMap<SocketAddr, Endpoint>,
        new: &BTreeMap<SocketAddr, Endpoint>,
    ) -> Self {
        Self {
            added: Self::added(old, new).cloned().collect(),
            removed: Self::removed(old, new).collect(),
        }
    }

    /// The addresses in `old` and not in `new`.
    pub fn removed<'a>(
        old: &'a BTreeMap<SocketAddr, Endpoint>,
        new: &'a BTreeMap<SocketAddr, Endpoint>,
    ) -> impl Iterator<Item = SocketAddr> + Send + 'a {
        old.keys().filter(|a| !new.contains_key(a)).copied()
    }

    /// The endpoints of `new` that are not in `old` as they are.
    pub fn added<'a>(
        old: &'a BTreeMap<SocketAddr, Endpoint>,
        new: &'a BTreeMap<SocketAddr, Endpoint>,
    ) -> impl Iterator<Item = &'a Endpoint> + Send + 'a {
        new.iter()
            .filter(|(a, e)| old.get(a) != Some(e))
            .map(|(_, e)| e)
    }
}

/// A name that cannot be parsed as an authority.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid destination {name:?}: {reason}")]
pub struct InvalidName {
    name: String,
    reason: &'static str,
}

/// What a stream asks about, parsed from its path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// `<svc>.<ns>.svc.<cluster-domain>:<port>`.
    Service(ServiceKey, u16),
    /// An IP and port: a service's cluster IP, or a pod's.
    Addr(SocketAddr),
    /// A name outside the cluster domain.
    Foreign(String),
}

impl Target {
    /// Parses `path` (`host[:port]`, port 80 when omitted).
    pub fn parse(path: &str, cluster_domain: &str) -> Result<Self, InvalidName> {
        let invalid = |reason| InvalidName {
            name: path.to_string(),
            reason,
        };
        if let Ok(addr) = path.parse::<SocketAddr>() {
            return Ok(Target::Addr(addr));
        }
        let (host, port) = match path.rsplit_once(':') {
            Some((host, port)) => {
                let port = port.parse::<u16>().map_err(|_| invalid("bad port"))?;
                (host, port)
            }
            None => (path, 80),
        };
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Target::Addr(SocketAddr::new(ip, port)));
        }
        let suffix = format!(".svc.{}", cluster_domain.to_ascii_lowercase());
        let parts = host
            .strip_suffix(&suffix)
            .map(|prefix| prefix.split('.').collect::<Vec<_>>());
        match parts.as_deref() {
            Some([name, namespace]) if !name.is_empty() && !namespace.is_empty() => {
                Ok(Target::Service(ServiceKey::new(*namespace, *name), port))
            }
            _ => Ok(Target::Foreign(format!("{host}:{port}"))),
        }
    }
}

/// How big the index is, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Services known.
    pub services: usize,
    /// Endpoints over every service port.
    pub endpoints: usize,
    /// Names with at least one reader.
    pub endpoint_watches: usize,
    /// Profile names with at least one reader.
    pub profile_watches: usize,
}

/// The index. Cheap to share behind an `Arc`; locks are never held across an `.await`.
#[derive(Debug)]
pub struct Index {
    cluster_domain: String,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    services: HashMap<ServiceKey, Indexed>,
    cluster_ips: HashMap<IpAddr, ServiceKey>,
    /// Every endpoint IP, to answer lookups of a pod's address: each service that lists the
    /// IP, the latest last, so removing one service leaves the others' entries in place.
    pod_ips: HashMap<IpAddr, Vec<(ServiceKey, Endpoint)>>,
    profiles: HashMap<String, Arc<DestinationProfile>>,
    /// Meshed pods by namespace and name.
    meshed_pods: BTreeMap<(String, String), MeshedPod>,
    endpoint_watches: HashMap<Target, watch::Sender<Arc<Snapshot>>>,
    profile_watches: HashMap<Target, watch::Sender<Arc<DestinationProfile>>>,
}

/// A service as given, and its ports' sets ready to hand out.
#[derive(Debug)]
struct Indexed {
    service: Service,
    sets: BTreeMap<u16, EndpointSet>,
}

impl Indexed {
    /// Each endpoint served carries its service's `service` and `namespace` labels (unless it
    /// has its own), so a client's metrics say which service a request went to, whatever
    /// name or address the application used for it.
    fn new(key: &ServiceKey, service: Service) -> Self {
        let sets = service
            .ports
            .iter()
            .map(|(port, p)| {
                let mut endpoints = p.endpoints.clone();
                for e in endpoints.values_mut() {
                    e.labels
                        .entry("service".into())
                        .or_insert_with(|| key.name.clone());
                    e.labels
                        .entry("namespace".into())
                        .or_insert_with(|| key.namespace.clone());
                }
                (*port, Arc::new(endpoints))
            })
            .collect();
        Self { service, sets }
    }
}

impl Index {
    /// An empty index for names under `cluster_domain` (`cluster.local`).
    pub fn new(cluster_domain: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            cluster_domain: cluster_domain.into(),
            inner: Mutex::new(Inner::default()),
        })
    }

    /// The cluster domain names are resolved under.
    pub fn cluster_domain(&self) -> &str {
        &self.cluster_domain
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Watches the endpoints of `path`.
    pub fn endpoints(&self, path: &str) -> Result<watch::Receiver<Arc<Snapshot>>, InvalidName> {
        let target = Target::parse(path, &self.cluster_domain)?;
        let mut inner = self.lock();
        inner
            .endpoint_watches
            .retain(|_, tx| tx.receiver_count() > 0);
        if let Some(tx) = inner.endpoint_watches.get(&target) {
            return Ok(tx.subscribe());
        }
        let snapshot = Snapshot {
            version: 1,
            view: inner.view(&target),
            delta: None,
        };
        let (tx, rx) = watch::channel(Arc::new(snapshot));
        inner.endpoint_watches.insert(target, tx);
        Ok(rx)
    }

    /// Watches the profile of `path`.
    pub fn profile(
        &self,
        path: &str,
    ) -> Result<watch::Receiver<Arc<DestinationProfile>>, InvalidName> {
        let target = Target::parse(path, &self.cluster_domain)?;
        let mut inner = self.lock();
        inner
            .profile_watches
            .retain(|_, tx| tx.receiver_count() > 0);
        if let Some(tx) = inner.profile_watches.get(&target) {
            return Ok(tx.subscribe());
        }
        let profile = inner.profile_of(&target, &self.cluster_domain);
        let (tx, rx) = watch::channel(profile);
        inner.profile_watches.insert(target, tx);
        Ok(rx)
    }

    /// Sets (or, with `None`, deletes) one service.
    pub fn set_service(&self, key: ServiceKey, service: Option<Service>) {
        let mut inner = self.lock();
        let unchanged = match (inner.services.get(&key), &service) {
            (Some(old), Some(new)) => old.service == *new,
            (None, None) => true,
            _ => false,
        };
        if unchanged {
            return;
        }
        inner.remove_service(&key);
        if let Some(service) = service {
            inner.insert_service(key, service);
        }
        inner.refresh(&self.cluster_domain);
    }

    /// Sets (or deletes) the profile of the service named `fqdn`
    /// (`<svc>.<ns>.svc.<cluster-domain>`).
    pub fn set_profile(&self, fqdn: &str, profile: Option<DestinationProfile>) {
        let fqdn = normalize_fqdn(fqdn);
        let mut inner = self.lock();
        let changed = match profile {
            Some(p) => inner.profiles.insert(fqdn, Arc::new(p.clone())).as_deref() != Some(&p),
            None => inner.profiles.remove(&fqdn).is_some(),
        };
        if changed {
            inner.refresh(&self.cluster_domain);
        }
    }

    /// Replaces everything: services not in `services` are deleted, and likewise profiles.
    /// Services and profiles that did not change keep their snapshots.
    pub fn replace_all(
        &self,
        services: BTreeMap<ServiceKey, Service>,
        profiles: BTreeMap<String, DestinationProfile>,
    ) {
        let mut inner = self.lock();
        let gone: Vec<ServiceKey> = inner
            .services
            .keys()
            .filter(|k| !services.contains_key(k))
            .cloned()
            .collect();
        for key in gone {
            inner.remove_service(&key);
        }
        for (key, service) in services {
            if inner.services.get(&key).map(|s| &s.service) != Some(&service) {
                inner.remove_service(&key);
                inner.insert_service(key, service);
            }
        }
        let profiles: HashMap<String, DestinationProfile> = profiles
            .into_iter()
            .map(|(fqdn, p)| (normalize_fqdn(&fqdn), p))
            .collect();
        inner.profiles.retain(|fqdn, _| profiles.contains_key(fqdn));
        for (fqdn, profile) in profiles {
            if inner.profiles.get(&fqdn).map(|p| p.as_ref()) != Some(&profile) {
                inner.profiles.insert(fqdn, Arc::new(profile));
            }
        }
        inner.refresh(&self.cluster_domain);
    }

    /// The services known, sorted.
    pub fn services(&self) -> Vec<ServiceKey> {
        let mut keys: Vec<_> = self.lock().services.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Every endpoint with an identity (a meshed pod's inbound proxy), once each, sorted by
    /// address: what `conduit check` and `conduit identity` look at.
    pub fn meshed_endpoints(&self) -> Vec<(std::net::SocketAddr, Endpoint)> {
        let inner = self.lock();
        let all: BTreeMap<std::net::SocketAddr, Endpoint> = inner
            .services
            .values()
            .flat_map(|s| s.sets.values())
            .flat_map(|set| set.iter())
            .filter(|(_, e)| e.identity.is_some())
            .map(|(addr, e)| (*addr, e.clone()))
            .collect();
        all.into_iter().collect()
    }

    /// Sets (or, with `None`, forgets) the meshed pod `namespace/name`.
    pub fn set_meshed_pod(&self, namespace: &str, name: &str, pod: Option<MeshedPod>) {
        let key = (namespace.to_string(), name.to_string());
        let mut inner = self.lock();
        match pod {
            Some(pod) => inner.meshed_pods.insert(key, pod),
            None => inner.meshed_pods.remove(&key),
        };
    }

    /// Replaces every meshed pod.
    pub fn replace_meshed_pods(&self, pods: BTreeMap<(String, String), MeshedPod>) {
        self.lock().meshed_pods = pods;
    }

    /// The meshed pods, by namespace and name.
    pub fn meshed_pods(&self) -> Vec<MeshedPod> {
        self.lock().meshed_pods.values().cloned().collect()
    }

    /// Every service's endpoints, as served (with the service's labels), each once per
    /// service: what the Stats API counts pods and finds proxies with.
    pub fn endpoints_by_service(&self) -> Vec<(ServiceKey, Vec<Endpoint>)> {
        let inner = self.lock();
        let mut all: Vec<(ServiceKey, Vec<Endpoint>)> = inner
            .services
            .iter()
            .map(|(key, s)| {
                let unique: BTreeMap<std::net::SocketAddr, &Endpoint> = s
                    .sets
                    .values()
                    .flat_map(|set| set.iter())
                    .map(|(a, e)| (*a, e))
                    .collect();
                (key.clone(), unique.into_values().cloned().collect())
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The names of the routes in the profile of the service `key`, in match order.
    pub fn route_names(&self, key: &ServiceKey) -> Vec<String> {
        let fqdn = format!("{}.{}.svc.{}", key.name, key.namespace, self.cluster_domain);
        self.lock()
            .profiles
            .get(&fqdn)
            .map(|p| p.routes.iter().map(|r| r.name.clone()).collect())
            .unwrap_or_default()
    }

    /// Sizes, for metrics.
    pub fn stats(&self) -> IndexStats {
        let inner = self.lock();
        IndexStats {
            services: inner.services.len(),
            endpoints: inner
                .services
                .values()
                .flat_map(|s| s.sets.values())
                .map(|set| set.len())
                .sum(),
            endpoint_watches: inner
                .endpoint_watches
                .values()
                .filter(|tx| tx.receiver_count() > 0)
                .count(),
            profile_watches: inner
                .profile_watches
                .values()
                .filter(|tx| tx.receiver_count() > 0)
                .count(),
        }
    }
}

fn normalize_fqdn(fqdn: &str) -> String {
    fqdn.strip_suffix('.').unwrap_or(fqdn).to_ascii_lowercase()
}

impl Inner {
    fn insert_service(&mut self, key: ServiceKey, service: Service) {
        for ip in &service.cluster_ips {
            self.cluster_ips.insert(*ip, key.clone());
        }
        for endpoint in service.ports.values().flat_map(|p| p.endpoints.values()) {
            self.pod_ips
                .entry(endpoint.addr.ip())
                .or_default()
                .push((key.clone(), endpoint.clone()));
        }
        self.services
            .insert(key.clone(), Indexed::new(&key, service));
    }

    fn remove_service(&mut self, key: &ServiceKey) {
        let Some(old) = self.services.remove(key) else {
            return;
        };
        for ip in &old.service.cluster_ips {
            if self.cluster_ips.get(ip) == Some(key) {
                self.cluster_ips.remove(ip);
            }
        }
        for endpoint in old
            .service
            .ports
            .values()
            .flat_map(|p| p.endpoints.values())
        {
            let ip = endpoint.addr.ip();
            if let Some(listed) = self.pod_ips.get_mut(&ip) {
                listed.retain(|(k, _)| k != key);
                if listed.is_empty() {
                    self.pod_ips.remove(&ip);
                }
            }
        }
    }

    /// The service and port a target names, following a cluster IP.
    fn service_port(&self, target: &Target) -> Option<(ServiceKey, u16)> {
        match target {
            Target::Service(key, port) => Some((key.clone(), *port)),
            Target::Addr(addr) => self
                .cluster_ips
                .get(&addr.ip())
                .map(|key| (key.clone(), addr.port())),
            Target::Foreign(_) => None,
        }
    }

    fn view(&self, target: &Target) -> View {
        if let Some((key, port)) = self.service_port(target) {
            return match self.services.get(&key) {
                Some(indexed) => View::Known(indexed.sets.get(&port).cloned().unwrap_or_default()),
                None => View::Unknown,
            };
        }
        match target {
            Target::Addr(addr) => match self.pod_ips.get(&addr.ip()).and_then(|l| l.last()) {
                Some((_, endpoint)) => {
                    let endpoint = Endpoint {
                        addr: *addr,
                        ..endpoint.clone()
                    };
                    View::Known(Arc::new(BTreeMap::from([(*addr, endpoint)])))
                }
                None => View::Unknown,
            },
            _ => View::Unknown,
        }
    }

    fn profile_of(&self, target: &Target, cluster_domain: &str) -> Arc<DestinationProfile> {
        let Some((key, port)) = self.service_port(target) else {
            return Arc::new(DestinationProfile::default());
        };
        let Some(indexed) = self.services.get(&key) else {
            return Arc::new(DestinationProfile::default());
        };
        let fqdn = key.fqdn(cluster_domain);
        let mut profile = self
            .profiles
            .get(&fqdn)
            .map(|p| p.as_ref().clone())
            .unwrap_or_default();
        profile.fully_qualified_name = fqdn;
        profile.opaque_protocol = indexed.service.ports.get(&port).is_some_and(|p| p.opaque);
        Arc::new(profile)
    }

    /// Brings every watched name up to date, notifying only those whose answer changed.
    fn refresh(&mut self, cluster_domain: &str) {
        self.endpoint_watches
            .retain(|_, tx| tx.receiver_count() > 0);
        self.profile_watches.retain(|_, tx| tx.receiver_count() > 0);
        for (target, tx) in &self.endpoint_watches {
            let view = self.view(target);
            tx.send_if_modified(|current| {
                if current.view == view {
                    return false;
                }
                let delta = match (&current.view, &view) {
                    (View::Known(old), View::Known(new)) => Some(Delta::between(old, new)),
                    _ => None,
                };
                *current = Arc::new(Snapshot {
                    version: current.version + 1,
                    view,
                    delta,
                });
                true
            });
        }
        for (target, tx) in &self.profile_watches {
            let profile = self.profile_of(target, cluster_domain);
            tx.send_if_modified(|current| {
                if **current == *profile {
                    return false;
                }
                *current = profile;
                true
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Port;

    fn ep(addr: &str) -> Endpoint {
        Endpoint::new(addr.parse().unwrap())
    }

    fn service(cluster_ip: &str, port: u16, endpoints: &[Endpoint]) -> Service {
        Service {
            cluster_ips: vec![cluster_ip.parse().unwrap()],
            ports: BTreeMap::from([(
                port,
                Port {
                    endpoints: endpoints.iter().map(|e| (e.addr, e.clone())).collect(),
                    opaque: false,
                },
            )]),
        }
    }

    fn addrs(view: &View) -> Vec<String> {
        match view {
            View::Unknown => vec!["unknown".into()],
            View::Known(set) => set.keys().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn names_parse_by_the_cluster_domain() {
        let books = ServiceKey::new("demo", "books");
        let cases = [
            (
                "books.demo.svc.cluster.local:7001",
                Target::Service(books.clone(), 7001),
            ),
            (
                "Books.Demo.svc.cluster.local.",
                Target::Service(books.clone(), 80),
            ),
            ("10.0.0.1:80", Target::Addr("10.0.0.1:80".parse().unwrap())),
            ("example.com:443", Target::Foreign("example.com:443".into())),
            (
                "a.b.c.svc.cluster.local:80",
                Target::Foreign("a.b.c.svc.cluster.local:80".into()),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(
                Target::parse(path, "cluster.local").unwrap(),
                want,
                "{path}"
            );
        }
        for bad in ["books:http", ":80", ""] {
            assert!(Target::parse(bad, "cluster.local").is_err(), "{bad}");
        }
    }

    #[test]
    fn a_watch_sees_changes_with_their_deltas_and_only_real_changes() {
        let index = Index::new("cluster.local");
        let key = ServiceKey::new("demo", "books");
        let mut rx = index
            .endpoints("books.demo.svc.cluster.local:7001")
            .unwrap();
        assert_eq!(rx.borrow_and_update().view, View::Unknown);

        index.set_service(
            key.clone(),
            Some(service("10.0.0.1", 7001, &[ep("10.1.0.1:7001")])),
        );
        assert!(rx.has_changed().unwrap());
        let snap = rx.borrow_and_update().clone();
        assert_eq!(addrs(&snap.view), ["10.1.0.1:7001"]);
        assert_eq!(snap.delta, None, "from unknown, no delta");

        // The same service again is no change.
        index.set_service(
            key.clone(),
            Some(service("10.0.0.1", 7001, &[ep("10.1.0.1:7001")])),
        );
        assert!(!rx.has_changed().unwrap());

        index.set_service(
            key.clone(),
            Some(service("10.0.0.1", 7001, &[ep("10.1.0.2:7001")])),
        );
        let snap = rx.borrow_and_update().clone();
        assert_eq!(snap.version, 3);
        let delta = snap.delta.clone().unwrap();
        assert_eq!(delta.removed, ["10.1.0.1:7001".parse().unwrap()]);
        // Served endpoints carry their service's labels.
        let mut added = ep("10.1.0.2:7001");
        added.labels = BTreeMap::from([
            ("namespace".to_string(), "demo".to_string()),
            ("service".to_string(), "books".to_string()),
        ]);
        assert_eq!(delta.added, [added]);

        index.set_service(key, None);
        assert_eq!(rx.borrow_and_update().view, View::Unknown);
    }

    #[test]
    fn cluster_ips_and_pod_ips_resolve() {
        let index = Index::new("cluster.local");
        let mut labelled = ep("10.1.0.7:7001");
        labelled.labels.insert("pod".into(), "books-1".into());
        index.set_service(
            ServiceKey::new("demo", "books"),
            Some(service("10.0.0.1", 7001, &[labelled.clone()])),
        );
        let by_cluster_ip = index.endpoints("10.0.0.1:7001").unwrap();
        assert_eq!(addrs(&by_cluster_ip.borrow().view), ["10.1.0.7:7001"]);
        let other_port = index.endpoints("10.0.0.1:9999").unwrap();
        assert_eq!(addrs(&other_port.borrow().view), Vec::<String>::new());

        let by_pod = index.endpoints("10.1.0.7:8080").unwrap();
        let View::Known(set) = &by_pod.borrow().view else {
            panic!("pod IP unknown")
        };
        let only = set.values().next().unwrap();
        assert_eq!(only.addr, "10.1.0.7:8080".parse().unwrap());
        assert_eq!(only.labels["pod"], "books-1");

        let nobody = index.endpoints("10.9.9.9:80").unwrap();
        assert_eq!(nobody.borrow().view, View::Unknown);
    }

    #[test]
    fn a_pod_listed_by_two_services_stays_answerable_when_one_goes() {
        let index = Index::new("cluster.local");
        let pod = ep("10.1.0.7:7001");
        index.set_service(
            ServiceKey::new("demo", "books"),
            Some(service("10.0.0.1", 7001, std::slice::from_ref(&pod))),
        );
        index.set_service(
            ServiceKey::new("demo", "shelf"),
            Some(service("10.0.0.2", 7001, &[pod])),
        );
        let by_pod = index.endpoints("10.1.0.7:7001").unwrap();
        index.set_service(ServiceKey::new("demo", "shelf"), None);
        assert_eq!(addrs(&by_pod.borrow().view), ["10.1.0.7:7001"]);
        index.set_service(ServiceKey::new("demo", "books"), None);
        assert_eq!(by_pod.borrow().view, View::Unknown);
    }

    #[test]
    fn profiles_follow_the_service_and_default_when_absent() {
        let index = Index::new("cluster.local");
        let rx = index.profile("books.demo.svc.cluster.local:7001").unwrap();
        assert_eq!(*rx.borrow().as_ref(), DestinationProfile::default());
        index.set_service(
            ServiceKey::new("demo", "books"),
            Some(service("10.0.0.1", 7001, &[])),
        );
        assert_eq!(
            rx.borrow().fully_qualified_name,
            "books.demo.svc.cluster.local"
        );
        let profile = DestinationProfile {
            routes: vec![conduit_api::destination::Route {
                name: "GET /books".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        index.set_profile("books.demo.svc.cluster.local", Some(profile));
        assert_eq!(rx.borrow().routes[0].name, "GET /books");
        let by_ip = index.profile("10.0.0.1:7001").unwrap();
        assert_eq!(by_ip.borrow().routes.len(), 1);
    }

    #[test]
    fn replace_all_deletes_what_is_missing_and_keeps_what_is_unchanged() {
        let index = Index::new("cluster.local");
        let books = ServiceKey::new("demo", "books");
        let authors = ServiceKey::new("demo", "authors");
        index.replace_all(
            BTreeMap::from([
                (books.clone(), service("10.0.0.1", 80, &[ep("10.1.0.1:80")])),
                (
                    authors.clone(),
                    service("10.0.0.2", 80, &[ep("10.1.0.2:80")]),
                ),
            ]),
            BTreeMap::new(),
        );
        let mut books_rx = index.endpoints("books.demo.svc.cluster.local").unwrap();
        let mut authors_rx = index.endpoints("authors.demo.svc.cluster.local").unwrap();
        books_rx.borrow_and_update();
        authors_rx.borrow_and_update();
        index.replace_all(
            BTreeMap::from([(books.clone(), service("10.0.0.1", 80, &[ep("10.1.0.1:80")]))]),
            BTreeMap::new(),
        );
        assert!(
            !books_rx.has_changed().unwrap(),
            "unchanged service, no update"
        );
        assert_eq!(authors_rx.borrow_and_update().view, View::Unknown);
        assert_eq!(index.services(), [books]);
        assert_eq!(
            index.endpoints("10.1.0.2:80").unwrap().borrow().view,
            View::Unknown
        );
    }

    #[test]
    fn watches_without_readers_are_dropped() {
        let index = Index::new("cluster.local");
        let rx = index.endpoints("books.demo.svc.cluster.local").unwrap();
        let rx2 = index.endpoints("books.demo.svc.cluster.local").unwrap();
        assert_eq!(index.stats().endpoint_watches, 1, "one watch per name");
        drop((rx, rx2));
        index.set_service(ServiceKey::new("demo", "x"), Some(Service::default()));
        assert_eq!(index.stats().endpoint_watches, 0);
        assert!(index.lock().endpoint_watches.is_empty());
    }
}
