//! Inbound authorization: each port's policy, and the checks made with it.

use conduit_api::policy::InboundServer;
use conduit_discovery::{Discovery, Resolved};
use conduit_identity::Name;
use conduit_metrics::AuthzMetrics;
use conduit_policy::{Client, Denied, ServerPolicy};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Ports whose policy is followed from the controller; connections to other ports (a
/// client probing random ports, say) get the default rather than a stream each.
const MAX_WATCHED_PORTS: usize = 256;

/// Where the proxy's pod is, for the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
}

/// The inbound policy of every port: followed from the controller when there is one (with
/// `default` until its first answer), `default` otherwise.
#[derive(Clone, Debug)]
pub struct PortPolicies {
    source: Option<(Discovery, Workload)>,
    default: Arc<ServerPolicy>,
    ports: Arc<Mutex<HashMap<u16, PortPolicy>>>,
    metrics: AuthzMetrics,
}

impl PortPolicies {
    /// Policies from `source`, `default` meanwhile and for unwatched ports; refusals are
    /// counted in `metrics`.
    pub fn new(
        source: Option<(Discovery, Workload)>,
        default: ServerPolicy,
        metrics: AuthzMetrics,
    ) -> Self {
        Self {
            source,
            default: Arc::new(default),
            ports: Arc::default(),
            metrics,
        }
    }

    /// The policy of `port`.
    pub fn port(&self, port: u16) -> PortPolicy {
        let Some((discovery, workload)) = &self.source else {
            return PortPolicy::fixed(self.default.clone());
        };
        let mut ports = self.ports.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = ports.get(&port) {
            return p.clone();
        }
        if ports.len() >= MAX_WATCHED_PORTS {
            return PortPolicy::fixed(self.default.clone());
        }
        let resolved = discovery.inbound_policy(&workload.namespace, &workload.pod, port);
        let policy = PortPolicy::new(Some(resolved), self.default.clone());
        ports.insert(port, policy.clone());
        policy
    }

    /// The refusal counters.
    pub fn metrics(&self) -> &AuthzMetrics {
        &self.metrics
    }
}

/// One port's policy, kept current.
#[derive(Clone, Debug)]
pub struct PortPolicy {
    state: Arc<Mutex<PortState>>,
}

#[derive(Debug)]
struct PortState {
    resolved: Option<Resolved<Option<Arc<InboundServer>>>>,
    current: Arc<ServerPolicy>,
    /// The controller did not answer within a wait: later connections do not wait again.
    gave_up: bool,
}

impl PortPolicy {
    fn fixed(policy: Arc<ServerPolicy>) -> Self {
        Self::new(None, policy)
    }

    fn new(
        resolved: Option<Resolved<Option<Arc<InboundServer>>>>,
        policy: Arc<ServerPolicy>,
    ) -> Self {
        Self {
            state: Arc::new(Mutex::new(PortState {
                resolved,
                current: policy,
                gave_up: false,
            })),
        }
    }

    /// Waits, at most `timeout`, for the controller's first answer about this port, so that
    /// a port's first connections are not judged by the default. After the timeout the
    /// default applies until the answer comes, and no later connection waits: an unreachable
    /// controller costs one wait per port, not one per connection.
    pub async fn ready(&self, timeout: std::time::Duration) {
        let waiting = {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            match &state.resolved {
                Some(r) if !state.gave_up && r.current().is_none() => Some(r.clone()),
                _ => None,
            }
        };
        if let Some(mut resolved) = waiting {
            if tokio::time::timeout(timeout, resolved.changed())
                .await
                .is_err()
            {
                tracing::info!(
                    ?timeout,
                    "no policy from the controller yet; using the default"
                );
                self.state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .gave_up = true;
            }
        }
    }

    /// The policy now. A change from the controller is read here, so it applies to the very
    /// next connection or request.
    pub fn current(&self) -> Arc<ServerPolicy> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let PortState {
            resolved, current, ..
        } = &mut *state;
        if let Some(resolved) = resolved {
            if resolved.has_changed() {
                if let Some(wire) = resolved.update() {
                    *current = Arc::new(ServerPolicy::from_api(&wire).unwrap_or_else(|error| {
                        // Fail closed: a policy we cannot read allows no one.
                        tracing::warn!(%error, server = %wire.name, "refusing all: unreadable policy");
                        ServerPolicy {
                            name: wire.name.as_str().into(),
                            protocol: conduit_policy::Protocol::Detect,
                            authorizations: Vec::new(),
                        }
                    }));
                }
            }
        }
        current.clone()
    }
}

/// One connection's client, checked against its port's policy.
#[derive(Clone, Debug)]
pub struct Authz {
    policy: PortPolicy,
    client: SocketAddr,
    identity: Option<Name>,
    target_addr: SocketAddr,
    metrics: AuthzMetrics,
}

impl Authz {
    /// Checks for `client` (with `identity` when it came over mTLS) to `target_addr`.
    pub fn new(
        policies: &PortPolicies,
        client: SocketAddr,
        identity: Option<Name>,
        target_addr: SocketAddr,
    ) -> Self {
        Self {
            policy: policies.port(target_addr.port()),
            client,
            identity,
            target_addr,
            metrics: policies.metrics.clone(),
        }
    }

    /// The port's policy now.
    pub fn policy(&self) -> Arc<ServerPolicy> {
        self.policy.current()
    }

    /// Waits (bounded) for the port's first policy from the controller.
    pub async fn ready(&self, timeout: std::time::Duration) {
        self.policy.ready(timeout).await
    }

    fn check(&self) -> Result<(), Denied> {
        let client = Client {
            addr: self.client.ip(),
            identity: self.identity.as_ref(),
        };
        self.policy.current().authorize(&client).map(drop)
    }

    /// Checks an HTTP request; a refusal is counted.
    pub fn check_request(&self) -> Result<(), Denied> {
        self.check().inspect_err(|denied| {
            self.metrics
                .http_denied(&denied.server, self.target_addr, denied.reason.as_str());
        })
    }

    /// Checks an opaque connection; a refusal is counted.
    pub fn check_connection(&self) -> Result<(), Denied> {
        self.check().inspect_err(|denied| {
            self.metrics
                .tcp_denied(&denied.server, self.target_addr, denied.reason.as_str());
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_policy::DefaultPolicy;
    use std::time::Duration;
    use tokio::sync::watch;

    #[tokio::test(start_paused = true)]
    async fn a_silent_controller_costs_one_wait_then_the_default_and_its_answer_applies() {
        let (tx, rx) = watch::channel(None);
        let deny = Arc::new(DefaultPolicy::Deny.policy(&[]));
        let port = PortPolicy::new(Some(Resolved::from_receiver(rx)), deny);
        let started = tokio::time::Instant::now();
        port.ready(Duration::from_secs(1)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        assert_eq!(port.current().name.as_ref(), "default:deny");
        let again = tokio::time::Instant::now();
        port.ready(Duration::from_secs(1)).await;
        assert_eq!(again.elapsed(), Duration::ZERO, "no second wait");

        let open = DefaultPolicy::AllUnauthenticated.to_api(&[]);
        tx.send(Some(Arc::new(open))).unwrap();
        assert_eq!(port.current().name.as_ref(), "default:all-unauthenticated");
    }
}
