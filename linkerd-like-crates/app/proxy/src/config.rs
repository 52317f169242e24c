//! Configuration from `CONDUIT_PROXY_*` environment variables.

use conduit_app_core::authorize::Workload;
use conduit_app_core::Config as SideConfig;
use conduit_identity::{Name, TrustAnchors};
use conduit_policy::DefaultPolicy;
use ipnet::IpNet;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// A variable whose value could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var}={value:?} is invalid: expected {expected}")]
pub struct ConfigError {
    /// The variable's name.
    pub var: &'static str,
    /// Its value.
    pub value: String,
    /// What it should have been.
    pub expected: &'static str,
}

/// Everything the proxy is configured with.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the outbound side listens.
    pub outbound_listen: SocketAddr,
    /// Where the inbound side listens.
    pub inbound_listen: SocketAddr,
    /// Where direct inbound connections go.
    pub inbound_forward: Option<SocketAddr>,
    /// Where the admin server listens.
    pub admin_listen: SocketAddr,
    /// Where the tap server listens (with an identity only: it serves the controller over
    /// mTLS).
    pub tap_listen: SocketAddr,
    /// This workload's labels (`namespace=demo,workload=web,pod=web-1`), for tap events
    /// and filters.
    pub workload_labels: Option<Arc<conduit_tap::Labels>>,
    /// How both sides serve connections.
    pub side: SideConfig,
    /// Time allowed for in-flight work after a shutdown begins.
    pub shutdown_grace_period: Duration,
    /// The initial log filter.
    pub log: String,
    /// Runtime worker threads.
    pub cores: usize,
    /// The controller's Destination API, if any: without it the proxy runs standalone
    /// (original destinations and DNS).
    pub destination: Option<DestinationConfig>,
    /// The proxy's identity, if any: without it there is no mTLS.
    pub identity: Option<IdentityConfig>,
    /// Inbound authorization.
    pub policy: PolicyConfig,
}

/// Where inbound policy comes from.
#[derive(Clone, Debug)]
pub struct PolicyConfig {
    /// The pod, for the controller's Policy API; unset, the default applies to every port.
    pub workload: Option<Workload>,
    /// What ports without a Server allow (and every port until the controller answers).
    pub default: DefaultPolicy,
    /// The cluster's networks, for the cluster-* defaults.
    pub cluster_networks: Vec<IpNet>,
    /// The workload's ports, whose policies are fetched at start rather than at their first
    /// connection.
    pub inbound_ports: Vec<u16>,
}

/// Who the proxy is, what it trusts, and where it gets its certificate.
#[derive(Clone, Debug)]
pub struct IdentityConfig {
    /// The proxy's identity.
    pub name: Name,
    /// The mesh's trust anchors.
    pub trust_anchors: TrustAnchors,
    /// The token proving the identity (re-read at each renewal).
    pub token_path: PathBuf,
    /// `host:port` of the controller's Identity API.
    pub svc_addr: String,
    /// The identity the controller presents.
    pub controller_name: Name,
}

/// Where the controller is, and who this proxy is to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationConfig {
    /// `host:port` of the controller's gRPC API.
    pub addr: String,
    /// Sent with every request (for example `ns:demo`), so the controller knows who asks.
    pub context: String,
}

/// Where Kubernetes mounts the projected service-account token (audience
/// `identity.conduit.io`) that the injected proxy presents.
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/tokens/conduit-identity-token";

/// The controller's identity in the mesh `name` belongs to:
/// `conduit-controller.<control-ns>.serviceaccount.identity.<control-ns>.<trust-domain>`.
fn default_controller_name(name: &Name) -> Option<Name> {
    let (_, mesh) = name.as_str().split_once(".serviceaccount.identity.")?;
    let (control_ns, _) = mesh.split_once('.')?;
    Name::parse(&format!(
        "conduit-controller.{control_ns}.serviceaccount.identity.{mesh}"
    ))
    .ok()
}

/// The private networks a cluster's pods and nodes usually live in.
pub const DEFAULT_CLUSTER_NETWORKS: &str = "10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16";

/// Linkerd's default opaque ports: server-speaks-first protocols (SMTP, MySQL, Galera,
/// PostgreSQL, Redis, Elasticsearch, memcached) that must not wait out detection.
pub const DEFAULT_OPAQUE_PORTS: &str = "25,587,3306,4444,5432,6379,9300,11211";

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `get`, which returns a variable's value if set.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&get);
        let defaults = SideConfig::default();
        let side = SideConfig {
            detect: conduit_detect::Config {
                timeout: env.duration("CONDUIT_PROXY_DETECT_TIMEOUT", "10s")?,
                max_bytes: env.parse("CONDUIT_PROXY_DETECT_MAX_BYTES", "8192", "a byte count")?,
            },
            opaque_ports: Arc::new(env.ports("CONDUIT_PROXY_OPAQUE_PORTS", DEFAULT_OPAQUE_PORTS)?),
            server: conduit_http::server::ServerConfig {
                header_read_timeout: env
                    .duration("CONDUIT_PROXY_HTTP_HEADER_READ_TIMEOUT", "10s")?,
                max_header_bytes: env.parse(
                    "CONDUIT_PROXY_HTTP_MAX_HEADER_BYTES",
                    "65536",
                    "a byte count",
                )?,
            },
            client: conduit_http::client::ClientConfig {
                connect_timeout: env.duration("CONDUIT_PROXY_CONNECT_TIMEOUT", "1s")?,
                idle_timeout: env.duration("CONDUIT_PROXY_POOL_IDLE_TIMEOUT", "20s")?,
                max_idle_per_endpoint: env.parse(
                    "CONDUIT_PROXY_POOL_MAX_IDLE",
                    "64",
                    "a connection count",
                )?,
            },
            response_timeout: env.optional_duration("CONDUIT_PROXY_RESPONSE_TIMEOUT")?,
            max_connections: env.parse(
                "CONDUIT_PROXY_MAX_CONNECTIONS",
                "10000",
                "a positive connection count",
            )?,
            cache_idle: defaults.cache_idle,
            queue: conduit_app_core::balancer::QueueConfig {
                timeout: env.duration("CONDUIT_PROXY_BALANCER_QUEUE_TIMEOUT", "3s")?,
                capacity: env.parse(
                    "CONDUIT_PROXY_BALANCER_QUEUE_CAPACITY",
                    &defaults.queue.capacity.to_string(),
                    "a positive request count",
                )?,
            },
        };
        if side.queue.capacity == 0 {
            return Err(env.invalid(
                "CONDUIT_PROXY_BALANCER_QUEUE_CAPACITY",
                "a positive request count",
            ));
        }
        if side.max_connections == 0 {
            return Err(env.invalid(
                "CONDUIT_PROXY_MAX_CONNECTIONS",
                "a positive connection count",
            ));
        }
        if side.detect.max_bytes == 0 {
            return Err(env.invalid("CONDUIT_PROXY_DETECT_MAX_BYTES", "a positive byte count"));
        }
        let cores: usize = env.parse("CONDUIT_PROXY_CORES", "1", "a positive number of threads")?;
        if cores == 0 {
            return Err(env.invalid("CONDUIT_PROXY_CORES", "a positive number of threads"));
        }
        Ok(Config {
            outbound_listen: env.addr("CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR", "127.0.0.1:4140")?,
            inbound_listen: env.addr("CONDUIT_PROXY_INBOUND_LISTEN_ADDR", "0.0.0.0:4143")?,
            inbound_forward: env.optional_addr("CONDUIT_PROXY_INBOUND_FORWARD_ADDR")?,
            admin_listen: env.addr("CONDUIT_PROXY_ADMIN_LISTEN_ADDR", "127.0.0.1:4191")?,
            tap_listen: env.addr("CONDUIT_PROXY_TAP_LISTEN_ADDR", "0.0.0.0:4190")?,
            workload_labels: env.labels("CONDUIT_PROXY_WORKLOAD_LABELS")?,
            side,
            shutdown_grace_period: env.duration("CONDUIT_PROXY_SHUTDOWN_GRACE_PERIOD", "30s")?,
            log: get("CONDUIT_PROXY_LOG").unwrap_or_else(|| "info".to_string()),
            cores,
            destination: env.destination()?,
            identity: env.identity()?,
            policy: env.policy()?,
        })
    }
}

struct Env<'a, F>(&'a F);

impl<F: Fn(&str) -> Option<String>> Env<'_, F> {
    fn invalid(&self, var: &'static str, expected: &'static str) -> ConfigError {
        ConfigError {
            var,
            value: (self.0)(var).unwrap_or_default(),
            expected,
        }
    }

    fn get_or(&self, var: &str, default: &str) -> String {
        (self.0)(var).unwrap_or_else(|| default.to_string())
    }

    fn parse<T: FromStr>(
        &self,
        var: &'static str,
        default: &str,
        expected: &'static str,
    ) -> Result<T, ConfigError> {
        self.get_or(var, default)
            .trim()
            .parse()
            .map_err(|_| self.invalid(var, expected))
    }

    fn addr(&self, var: &'static str, default: &str) -> Result<SocketAddr, ConfigError> {
        self.parse(
            var,
            default,
            "an IP address and port, such as 127.0.0.1:4140",
        )
    }

    /// `key=value,key=value`; keys and values are label-like (no `,` `=` or spaces).
    fn labels(&self, var: &'static str) -> Result<Option<Arc<conduit_tap::Labels>>, ConfigError> {
        let Some(text) = (self.0)(var).filter(|v| !v.trim().is_empty()) else {
            return Ok(None);
        };
        let expected = "labels as key=value, comma-separated (namespace=demo,workload=web)";
        let mut labels = conduit_tap::Labels::new();
        for pair in text.split(',') {
            let (k, v) = pair
                .trim()
                .split_once('=')
                .ok_or_else(|| self.invalid(var, expected))?;
            let ok = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
            };
            if !ok(k) || !(v.is_empty() || ok(v)) {
                return Err(self.invalid(var, expected));
            }
            labels.insert(k.to_string(), v.to_string());
        }
        Ok(Some(Arc::new(labels)))
    }

    fn optional_addr(&self, var: &'static str) -> Result<Option<SocketAddr>, ConfigError> {
        match (self.0)(var).filter(|v| !v.trim().is_empty()) {
            None => Ok(None),
            Some(_) => self.addr(var, "").map(Some),
        }
    }

    fn duration(&self, var: &'static str, default: &str) -> Result<Duration, ConfigError> {
        let expected = "a duration such as 500ms, 10s or 1m";
        humantime::parse_duration(self.get_or(var, default).trim())
            .map_err(|_| self.invalid(var, expected))
    }

    fn optional_duration(&self, var: &'static str) -> Result<Option<Duration>, ConfigError> {
        match (self.0)(var).filter(|v| !v.trim().is_empty()) {
            None => Ok(None),
            Some(_) => self.duration(var, "").map(Some),
        }
    }

    /// A `host:port` variable, if set.
    fn host_port(&self, var: &'static str) -> Result<Option<String>, ConfigError> {
        let Some(addr) = (self.0)(var).filter(|v| !v.trim().is_empty()) else {
            return Ok(None);
        };
        let addr = addr.trim().to_string();
        let valid = addr.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !valid {
            return Err(self.invalid(
                var,
                "a host and port, such as conduit-destination.conduit.svc.cluster.local:8086",
            ));
        }
        Ok(Some(addr))
    }

    /// `CONDUIT_PROXY_IDENTITY_*`: on when `..._LOCAL_NAME` is set.
    fn identity(&self) -> Result<Option<IdentityConfig>, ConfigError> {
        let var = "CONDUIT_PROXY_IDENTITY_LOCAL_NAME";
        let Some(name) = (self.0)(var).filter(|v| !v.trim().is_empty()) else {
            return Ok(None);
        };
        let name = Name::parse(name.trim()).map_err(|_| {
            self.invalid(
                var,
                "an identity name such as web.demo.serviceaccount.identity.conduit.cluster.local",
            )
        })?;
        let var = "CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS";
        let expected = "the PEM text of the mesh's trust anchor certificates";
        let pem = (self.0)(var).ok_or_else(|| self.invalid(var, expected))?;
        let trust_anchors =
            TrustAnchors::from_pem(&pem).map_err(|_| self.invalid(var, expected))?;
        let var = "CONDUIT_PROXY_IDENTITY_SVC_ADDR";
        let svc_addr = match self.host_port(var)? {
            Some(addr) => addr,
            None => self
                .host_port("CONDUIT_PROXY_DESTINATION_SVC_ADDR")?
                .ok_or_else(|| {
                    self.invalid(
                        var,
                        "the controller's host:port (or CONDUIT_PROXY_DESTINATION_SVC_ADDR)",
                    )
                })?,
        };
        let var = "CONDUIT_PROXY_CONTROLLER_NAME";
        let expected = "the controller's identity, such as conduit-controller.conduit.serviceaccount.identity.conduit.cluster.local";
        let controller_name = match (self.0)(var).filter(|v| !v.trim().is_empty()) {
            Some(v) => Name::parse(v.trim()).map_err(|_| self.invalid(var, expected))?,
            None => default_controller_name(&name).ok_or_else(|| self.invalid(var, expected))?,
        };
        Ok(Some(IdentityConfig {
            controller_name,
            name,
            trust_anchors,
            token_path: self
                .get_or("CONDUIT_PROXY_IDENTITY_TOKEN_FILE", DEFAULT_TOKEN_FILE)
                .into(),
            svc_addr,
        }))
    }

    /// `CONDUIT_PROXY_POLICY_WORKLOAD`, `..._DEFAULT_INBOUND_POLICY`, `..._CLUSTER_NETWORKS`.
    fn policy(&self) -> Result<PolicyConfig, ConfigError> {
        let var = "CONDUIT_PROXY_POLICY_WORKLOAD";
        let workload = match (self.0)(var).filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(v) => match v.trim().split_once(':') {
                Some((ns, pod)) if !ns.is_empty() && !pod.is_empty() => Some(Workload {
                    namespace: ns.to_string(),
                    pod: pod.to_string(),
                }),
                _ => return Err(self.invalid(var, "<namespace>:<pod>, such as demo:books-0")),
            },
        };
        if workload.is_some()
            && self
                .host_port("CONDUIT_PROXY_DESTINATION_SVC_ADDR")?
                .is_none()
        {
            return Err(self.invalid(
                var,
                "to be set only with CONDUIT_PROXY_DESTINATION_SVC_ADDR (policies come from the controller)",
            ));
        }
        let var = "CONDUIT_PROXY_DEFAULT_INBOUND_POLICY";
        let default = self
            .get_or(var, "all-unauthenticated")
            .parse()
            .map_err(|_| self.invalid(var, DefaultPolicy::NAMES))?;
        let var = "CONDUIT_PROXY_POLICY_CLUSTER_NETWORKS";
        let cluster_networks = self
            .get_or(var, DEFAULT_CLUSTER_NETWORKS)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(conduit_policy::parse_net)
            .collect::<Result<_, _>>()
            .map_err(|_| {
                self.invalid(var, "comma-separated networks, such as 10.0.0.0/8,fd00::/8")
            })?;
        let mut inbound_ports: Vec<u16> = if (self.0)("CONDUIT_PROXY_INBOUND_PORTS").is_some() {
            self.ports("CONDUIT_PROXY_INBOUND_PORTS", "")?
                .into_iter()
                .collect()
        } else {
            Vec::new()
        };
        inbound_ports.sort_unstable();
        Ok(PolicyConfig {
            workload,
            default,
            cluster_networks,
            inbound_ports,
        })
    }

    /// `CONDUIT_PROXY_DESTINATION_SVC_ADDR` (`host:port`) and `..._CONTEXT`.
    fn destination(&self) -> Result<Option<DestinationConfig>, ConfigError> {
        let Some(addr) = self.host_port("CONDUIT_PROXY_DESTINATION_SVC_ADDR")? else {
            return Ok(None);
        };
        Ok(Some(DestinationConfig {
            addr,
            context: self.get_or("CONDUIT_PROXY_DESTINATION_CONTEXT", ""),
        }))
    }

    /// A comma-separated list of ports and inclusive ranges (`25,3306,8000-8010`).
    fn ports(&self, var: &'static str, default: &str) -> Result<HashSet<u16>, ConfigError> {
        let expected = "comma-separated ports or ranges, such as 25,3306,8000-8010";
        let value = self.get_or(var, default);
        let mut ports = HashSet::new();
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (lo, hi) = match item.split_once('-') {
                Some((lo, hi)) => (lo.trim().parse::<u16>(), hi.trim().parse::<u16>()),
                None => (item.parse(), item.parse()),
            };
            match (lo, hi) {
                (Ok(lo), Ok(hi)) if lo > 0 && lo <= hi => ports.extend(lo..=hi),
                _ => return Err(self.invalid(var, expected)),
            }
        }
        Ok(ports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.outbound_listen, "127.0.0.1:4140".parse().unwrap());
        assert_eq!(c.inbound_listen, "0.0.0.0:4143".parse().unwrap());
        assert_eq!(c.admin_listen, "127.0.0.1:4191".parse().unwrap());
        assert_eq!(c.inbound_forward, None);
        assert_eq!(c.side.detect.timeout, Duration::from_secs(10));
        assert_eq!(c.side.detect.max_bytes, 8192);
        assert!(c.side.opaque_ports.contains(&3306));
        assert!(!c.side.opaque_ports.contains(&80));
        assert_eq!(c.side.response_timeout, None);
        assert_eq!(c.cores, 1);
    }

    #[test]
    fn values_are_read() {
        let c = config(&[
            ("CONDUIT_PROXY_OPAQUE_PORTS", "22, 8000-8002"),
            ("CONDUIT_PROXY_DETECT_TIMEOUT", "250ms"),
            ("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", "127.0.0.1:7000"),
            ("CONDUIT_PROXY_RESPONSE_TIMEOUT", "2s"),
            ("CONDUIT_PROXY_SHUTDOWN_GRACE_PERIOD", "1m"),
        ])
        .unwrap();
        let mut ports: Vec<u16> = c.side.opaque_ports.iter().copied().collect();
        ports.sort();
        assert_eq!(ports, vec![22, 8000, 8001, 8002]);
        assert_eq!(c.side.detect.timeout, Duration::from_millis(250));
        assert_eq!(c.inbound_forward, Some("127.0.0.1:7000".parse().unwrap()));
        assert_eq!(c.side.response_timeout, Some(Duration::from_secs(2)));
        assert_eq!(c.shutdown_grace_period, Duration::from_secs(60));
        assert_eq!(c.destination, None);

        let c = config(&[
            ("CONDUIT_PROXY_DESTINATION_SVC_ADDR", "localhost:8086"),
            ("CONDUIT_PROXY_DESTINATION_CONTEXT", "ns:demo"),
            ("CONDUIT_PROXY_BALANCER_QUEUE_TIMEOUT", "500ms"),
        ])
        .unwrap();
        let d = c.destination.unwrap();
        assert_eq!(
            (d.addr.as_str(), d.context.as_str()),
            ("localhost:8086", "ns:demo")
        );
        assert_eq!(c.side.queue.timeout, Duration::from_millis(500));
    }

    #[test]
    fn the_controller_name_defaults_to_the_meshs_controller() {
        let name = Name::parse("web.demo.serviceaccount.identity.linkerd.example.org").unwrap();
        assert_eq!(
            default_controller_name(&name).unwrap().as_str(),
            "conduit-controller.linkerd.serviceaccount.identity.linkerd.example.org"
        );
    }

    #[test]
    fn identity_needs_anchors_and_a_controller() {
        let name = (
            "CONDUIT_PROXY_IDENTITY_LOCAL_NAME",
            "web.demo.serviceaccount.identity.conduit.cluster.local",
        );
        let err = config(&[name]).unwrap_err();
        assert_eq!(err.var, "CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS");
        let err = config(&[name, ("CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS", "not pem")]).unwrap_err();
        assert_eq!(err.var, "CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS");
        assert!(err.to_string().contains("PEM"), "{err}");
        let anchors = ca_pem();
        let err = config(&[
            name,
            ("CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS", &anchors),
            ("CONDUIT_PROXY_DESTINATION_SVC_ADDR", "controller:8086"),
            ("CONDUIT_PROXY_CONTROLLER_NAME", "Controller"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "CONDUIT_PROXY_CONTROLLER_NAME");
    }

    /// A self-signed CA certificate, as trust anchors.
    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn workload_labels_are_key_value_pairs() {
        let c = config(&[(
            "CONDUIT_PROXY_WORKLOAD_LABELS",
            "namespace=demo, workload=web,pod=web-1",
        )])
        .unwrap();
        let labels = c.workload_labels.unwrap();
        assert_eq!(labels.len(), 3);
        assert_eq!(labels["workload"], "web");
        assert_eq!(c.tap_listen, "0.0.0.0:4190".parse().unwrap());
        assert!(config(&[]).unwrap().workload_labels.is_none());
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases = [
            ("CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR", "localhost"),
            ("CONDUIT_PROXY_DETECT_TIMEOUT", "ten"),
            ("CONDUIT_PROXY_OPAQUE_PORTS", "25,x"),
            ("CONDUIT_PROXY_OPAQUE_PORTS", "9-3"),
            ("CONDUIT_PROXY_OPAQUE_PORTS", "0"),
            ("CONDUIT_PROXY_MAX_CONNECTIONS", "0"),
            ("CONDUIT_PROXY_CORES", "-1"),
            ("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", "7000"),
            ("CONDUIT_PROXY_DETECT_MAX_BYTES", "0"),
            ("CONDUIT_PROXY_DESTINATION_SVC_ADDR", "controller"),
            ("CONDUIT_PROXY_DESTINATION_SVC_ADDR", ":8086"),
            ("CONDUIT_PROXY_BALANCER_QUEUE_TIMEOUT", "soon"),
            ("CONDUIT_PROXY_BALANCER_QUEUE_CAPACITY", "0"),
            ("CONDUIT_PROXY_IDENTITY_LOCAL_NAME", "Web_Demo"),
            ("CONDUIT_PROXY_POLICY_WORKLOAD", "books-0"),
            ("CONDUIT_PROXY_POLICY_WORKLOAD", "demo:books-0"),
            ("CONDUIT_PROXY_DEFAULT_INBOUND_POLICY", "allow"),
            ("CONDUIT_PROXY_POLICY_CLUSTER_NETWORKS", "10.0.0.0/8,lan"),
            ("CONDUIT_PROXY_INBOUND_PORTS", "http"),
            ("CONDUIT_PROXY_TAP_LISTEN_ADDR", "4190"),
            ("CONDUIT_PROXY_WORKLOAD_LABELS", "deployment"),
            ("CONDUIT_PROXY_WORKLOAD_LABELS", "app=web,=x"),
            ("CONDUIT_PROXY_WORKLOAD_LABELS", "app=a b"),
        ];
        for (var, value) in cases {
            let err = config(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var);
            assert_eq!(err.value, value);
            assert!(err.to_string().starts_with(var), "{err}");
        }
    }
}
