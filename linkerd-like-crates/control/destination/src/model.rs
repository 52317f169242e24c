//! What the index knows: services, their ports' endpoints, and profiles.
//!
//! Sources (Kubernetes, the file registry) reduce what they watch to these types; the index
//! answers every stream from them.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// A service, by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// The namespace.
    pub namespace: String,
    /// The service's name.
    pub name: String,
}

impl ServiceKey {
    /// The key for `name` in `namespace`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// `<name>.<namespace>.svc.<cluster_domain>`.
    pub fn fqdn(&self, cluster_domain: &str) -> String {
        format!("{}.{}.svc.{cluster_domain}", self.name, self.namespace)
    }
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A service: its cluster IPs and, per service port, the endpoints ready to serve it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// Virtual IPs that name the service (a Kubernetes ClusterIP); may be empty.
    pub cluster_ips: Vec<IpAddr>,
    /// By service port.
    pub ports: BTreeMap<u16, Port>,
}

/// One port of a service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Port {
    /// The endpoints that serve it, by address.
    pub endpoints: BTreeMap<SocketAddr, Endpoint>,
    /// The port carries an opaque protocol: proxies must not detect.
    pub opaque: bool,
}

/// One endpoint and what a proxy should know about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Relative load-balancing weight (1 unless said otherwise).
    pub weight: u32,
    /// The TLS identity of the endpoint's proxy, when it has one.
    pub identity: Option<String>,
    /// Metric labels (`pod`, `workload`, ...).
    pub labels: BTreeMap<String, String>,
    /// How to talk to it.
    pub protocol: ProtocolHint,
    /// The port its proxy serves tap and stats on (to the controller only), when it has one.
    pub tap_port: u16,
    /// Its proxy's inbound port, where other proxies send it opaque TCP over mTLS with a
    /// transport header; `None` for an endpoint without a proxy.
    pub inbound_port: Option<u16>,
}

/// A meshed pod, known of itself whether or not a service lists it (a client has a proxy
/// too): what tap and the Stats API reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshedPod {
    /// Its IP.
    pub ip: std::net::IpAddr,
    /// Its proxy's identity.
    pub identity: String,
    /// Its labels: `namespace`, `pod`, `workload`.
    pub labels: BTreeMap<String, String>,
    /// Its proxy's tap port.
    pub tap_port: u16,
}

/// The port an injected proxy serves tap and stats on.
pub const DEFAULT_TAP_PORT: u16 = 4190;
/// The port of an injected proxy's inbound listener.
pub const DEFAULT_INBOUND_PORT: u16 = 4143;

impl Endpoint {
    /// An endpoint at `addr` with no metadata.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            weight: 1,
            identity: None,
            labels: BTreeMap::new(),
            protocol: ProtocolHint::Unknown,
            tap_port: DEFAULT_TAP_PORT,
            inbound_port: None,
        }
    }
}

/// How a proxy should talk to an endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProtocolHint {
    /// Nothing known: detect.
    #[default]
    Unknown,
    /// The endpoint has a proxy that takes HTTP/2 for all HTTP.
    H2,
    /// Opaque TCP.
    Opaque,
}
