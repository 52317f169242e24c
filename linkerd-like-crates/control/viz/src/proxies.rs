//! The meshed proxies the controller knows (from its index), and mTLS channels to their tap
//! ports.

use crate::resource::{Kind, Labels, Resource};
use conduit_control_destination::Index;
use conduit_identity::{Credentials, Name};
use conduit_tls::ClientTls;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use tonic::transport::Channel;

/// One meshed pod's proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    /// Its tap port's address.
    pub tap: SocketAddr,
    /// Its identity.
    pub identity: String,
    /// Its endpoint's labels (`namespace`, `workload`, `pod`).
    pub labels: Labels,
    /// The services it is an endpoint of, as `(namespace, name)`.
    pub services: BTreeSet<(String, String)>,
}

impl Proxy {
    /// `namespace/pod`, or the address when the pod is not named.
    pub fn name(&self) -> String {
        match (self.labels.get("namespace"), self.labels.get("pod")) {
            (Some(ns), Some(pod)) => format!("{ns}/{pod}"),
            _ => self.tap.to_string(),
        }
    }

    /// Whether this proxy is one of `resource`'s.
    pub fn is_of(&self, resource: &Resource) -> bool {
        match resource.kind {
            Kind::Service => self.services.iter().any(|(ns, name)| {
                resource.namespace.as_ref().is_none_or(|n| n == ns)
                    && resource.name.as_ref().is_none_or(|n| n == name)
            }),
            _ => resource.matches(&self.labels),
        }
    }
}

/// Every meshed proxy in `index`, once each (by its tap address: a pod's IP and its proxy's
/// tap port), sorted by address: the endpoints with an identity, and the meshed pods no
/// service lists (clients).
pub fn meshed(index: &Index) -> Vec<Proxy> {
    let mut by_addr: BTreeMap<SocketAddr, Proxy> = BTreeMap::new();
    for (key, endpoints) in index.endpoints_by_service() {
        for e in endpoints {
            let Some(identity) = e.identity else { continue };
            let tap = SocketAddr::new(e.addr.ip(), e.tap_port);
            let proxy = by_addr.entry(tap).or_insert_with(|| {
                let mut labels = e.labels.clone();
                labels.remove("service");
                Proxy {
                    tap,
                    identity,
                    labels,
                    services: BTreeSet::new(),
                }
            });
            proxy
                .services
                .insert((key.namespace.clone(), key.name.clone()));
        }
    }
    for pod in index.meshed_pods() {
        let tap = SocketAddr::new(pod.ip, pod.tap_port);
        by_addr.entry(tap).or_insert_with(|| Proxy {
            tap,
            identity: pod.identity,
            labels: pod.labels,
            services: BTreeSet::new(),
        });
    }
    by_addr.into_values().collect()
}

/// Channels to proxies' tap ports over mTLS as the controller, one per proxy, reused by the
/// stats collector and taps alike.
#[derive(Clone)]
pub struct Clients {
    tls: Option<ClientTls>,
    channels: Arc<Mutex<HashMap<(SocketAddr, String), Channel>>>,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients")
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a proxy cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The controller has no identity, and proxies serve tap and stats over mTLS only.
    #[error("the controller has no identity (--identity-dir): proxies serve tap and stats to it over mTLS only")]
    NoIdentity,
    /// The proxy's identity is not a valid name.
    #[error("proxy {0}: its identity is not a valid name")]
    BadIdentity(String),
    /// The address cannot be dialled.
    #[error("proxy {0}: {1}")]
    Address(String, String),
}

impl Clients {
    /// Clients with the controller's `credentials` (none: every call fails with
    /// [`ClientError::NoIdentity`]).
    pub fn new(credentials: Option<Arc<Credentials>>) -> Result<Self, conduit_tls::ConfigError> {
        let tls = credentials.map(ClientTls::new).transpose()?;
        Ok(Self {
            tls,
            channels: Arc::default(),
        })
    }

    /// Clients that cannot reach any proxy: every call fails with
    /// [`ClientError::NoIdentity`].
    pub fn without_identity() -> Self {
        Self {
            tls: None,
            channels: Arc::default(),
        }
    }

    /// The channel to `proxy`'s tap port.
    pub fn channel(&self, proxy: &Proxy) -> Result<Channel, ClientError> {
        let tls = self.tls.clone().ok_or(ClientError::NoIdentity)?;
        let key = (proxy.tap, proxy.identity.clone());
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = channels.get(&key) {
            return Ok(channel.clone());
        }
        let name = Name::parse(&proxy.identity)
            .map_err(|_| ClientError::BadIdentity(proxy.identity.clone()))?;
        let channel = conduit_discovery::channel(&proxy.tap.to_string(), Some((tls, name)))
            .map_err(|e| ClientError::Address(proxy.name(), e.to_string()))?;
        channels.insert(key, channel.clone());
        Ok(channel)
    }

    /// Forgets the channels of proxies not in `live`.
    pub fn retain(&self, live: &[Proxy]) {
        let live: BTreeSet<(SocketAddr, &str)> =
            live.iter().map(|p| (p.tap, p.identity.as_str())).collect();
        self.channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(addr, id), _| live.contains(&(*addr, id.as_str())));
    }
}
