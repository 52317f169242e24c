//! The proxy's side of service discovery.
//!
//! [`Discovery::resolve`] follows one authority's `Get` stream and [`Discovery::profile`] its
//! `GetProfile` stream (see `proto/destination.proto`). Each follows in a task of its own and
//! publishes the latest state through a `tokio::sync::watch`, so readers (the balancer, the
//! router) look at the newest state without waiting on the stream. [`Discovery::inbound_policy`]
//! follows one inbound port's policy (`proto/policy.proto`) the same way.
//!
//! When the stream fails or the controller goes away, the last state stays published and the
//! task reconnects with exponential backoff (100 ms doubling to 10 s, with jitter); the first
//! answer on the new stream replaces the old state. The task ends when the last handle to it
//! is dropped. Sharing a stream among connections is the caller's cache's job: the proxy keeps
//! one [`Resolved`] per authority and evicts it when idle.

#![forbid(unsafe_code)]

pub mod channel;
mod follow;
mod resolution;

pub use self::channel::channel;
pub use self::resolution::{EndpointMeta, ProtocolHint, Resolution};
pub use conduit_stack::Backoff;

use conduit_api::destination::destination_client::DestinationClient;
use conduit_api::destination::{DestinationProfile, GetDestination};
use conduit_api::policy::inbound_policies_client::InboundPoliciesClient;
use follow::{EndpointsFollower, ProfileFollower};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

/// Follows authorities' endpoints and profiles. [`Discovery`] asks the controller; tests and
/// embedders may answer from elsewhere with [`Resolved::from_receiver`].
pub trait Resolve: std::fmt::Debug + Send + Sync + 'static {
    /// Follows the endpoints of `authority`.
    fn resolve(&self, authority: &str) -> Resolved<Resolution>;
    /// Follows the profile of `authority`; `None` until the first answer.
    fn profile(&self, authority: &str) -> Resolved<Option<Arc<DestinationProfile>>>;
}

impl Resolve for Discovery {
    fn resolve(&self, authority: &str) -> Resolved<Resolution> {
        Discovery::resolve(self, authority)
    }

    fn profile(&self, authority: &str) -> Resolved<Option<Arc<DestinationProfile>>> {
        Discovery::profile(self, authority)
    }
}

/// The controller's address is not usable.
#[derive(Debug, thiserror::Error)]
#[error("invalid controller address {addr:?}: {reason}")]
pub struct InvalidControllerAddr {
    addr: String,
    reason: String,
}

/// A client of the controller's Destination API.
#[derive(Clone, Debug)]
pub struct Discovery {
    client: DestinationClient<Channel>,
    policies: InboundPoliciesClient<Channel>,
    context_token: String,
    backoff: Backoff,
}

impl Discovery {
    /// A client of the controller at `addr` (`host:port`); connects lazily, and again
    /// whenever needed. `context_token` tells the controller who is asking.
    pub fn new(
        addr: &str,
        context_token: impl Into<String>,
    ) -> Result<Self, InvalidControllerAddr> {
        Ok(Self::from_channel(
            controller_endpoint(addr)?.connect_lazy(),
            context_token,
        ))
    }

    /// A client over `channel` (one with a connector of the caller's: TLS, say).
    pub fn from_channel(channel: Channel, context_token: impl Into<String>) -> Self {
        Self {
            client: DestinationClient::new(channel.clone()),
            policies: InboundPoliciesClient::new(channel),
            context_token: context_token.into(),
            backoff: Backoff::default(),
        }
    }

    /// Uses `backoff` between reconnection attempts.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    fn request(&self, authority: &str) -> GetDestination {
        GetDestination {
            scheme: "k8s".to_string(),
            path: authority.to_string(),
            context_token: self.context_token.clone(),
        }
    }

    /// Follows the endpoints of `authority`.
    pub fn resolve(&self, authority: &str) -> Resolved<Resolution> {
        let (tx, rx) = watch::channel(Resolution::Pending);
        let follower = EndpointsFollower::new(self.client.clone(), self.request(authority));
        let task = tokio::spawn(follow::run(follower, tx, self.backoff.clone()));
        Resolved::new(rx, task)
    }

    /// Follows the profile of `authority`; `None` until the first answer.
    pub fn profile(&self, authority: &str) -> Resolved<Option<Arc<DestinationProfile>>> {
        let (tx, rx) = watch::channel(None);
        let follower = ProfileFollower::new(self.client.clone(), self.request(authority));
        let task = tokio::spawn(follow::run(follower, tx, self.backoff.clone()));
        Resolved::new(rx, task)
    }
}

impl Discovery {
    /// Follows the inbound policy of `pod`'s `port`; `None` until the first answer.
    pub fn inbound_policy(
        &self,
        namespace: &str,
        pod: &str,
        port: u16,
    ) -> Resolved<Option<Arc<conduit_api::policy::InboundServer>>> {
        let (tx, rx) = watch::channel(None);
        let request = conduit_api::policy::PortRequest {
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            port: u32::from(port),
        };
        let follower = follow::PolicyFollower::new(self.policies.clone(), request);
        let task = tokio::spawn(follow::run(follower, tx, self.backoff.clone()));
        Resolved::new(rx, task)
    }
}

/// How every client of the controller connects to `addr` (`host:port`): a short connect
/// timeout, and HTTP/2 keep-alives so a silently dead controller is noticed.
pub fn controller_endpoint(addr: &str) -> Result<Endpoint, InvalidControllerAddr> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| InvalidControllerAddr {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?
        .connect_timeout(Duration::from_secs(1))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5)))
}

/// The latest state of a followed stream. Clones share the stream; it stops once all are
/// dropped.
#[derive(Clone, Debug)]
pub struct Resolved<T> {
    rx: watch::Receiver<T>,
    _task: Option<Arc<AbortOnDrop>>,
}

#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T: Clone> Resolved<T> {
    fn new(rx: watch::Receiver<T>, task: tokio::task::JoinHandle<()>) -> Self {
        Self {
            rx,
            _task: Some(Arc::new(AbortOnDrop(task))),
        }
    }

    /// States published by whoever holds `rx`'s sender.
    pub fn from_receiver(rx: watch::Receiver<T>) -> Self {
        Self { rx, _task: None }
    }

    /// The latest state.
    pub fn current(&self) -> T {
        self.rx.borrow().clone()
    }

    /// The latest state, marking it seen.
    pub fn update(&mut self) -> T {
        self.rx.borrow_and_update().clone()
    }

    /// Whether the state changed since it was last marked seen. Cheap: one atomic load.
    pub fn has_changed(&self) -> bool {
        self.rx.has_changed().unwrap_or(false)
    }

    /// Waits for the next change.
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
