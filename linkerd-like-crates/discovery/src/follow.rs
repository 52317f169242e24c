//! Following a server stream: open, apply each message to a state, publish it, and reopen
//! with backoff when the stream ends or fails.

use crate::resolution::{EndpointMeta, Resolution};
use conduit_api::destination as api;
use conduit_api::destination::destination_client::DestinationClient;
use conduit_api::policy;
use conduit_api::policy::inbound_policies_client::InboundPoliciesClient;
use conduit_stack::Backoff;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

/// One kind of stream and how its messages make a state.
pub(crate) trait Follower: Send + 'static {
    type Message: Send + 'static;
    type State: PartialEq + Send + Sync + 'static;

    /// Opens the stream.
    fn open(&mut self) -> impl Future<Output = Result<Streaming<Self::Message>, Status>> + Send;

    /// The state after `message`; `fresh` when it is a new stream's first message, which
    /// replaces whatever came before.
    fn apply(&mut self, message: Self::Message, fresh: bool) -> Self::State;
}

/// Follows `follower`'s stream into `tx` until every receiver is gone.
pub(crate) async fn run<F: Follower>(
    mut follower: F,
    tx: watch::Sender<F::State>,
    mut backoff: Backoff,
) {
    let mut failures = 0u32;
    loop {
        let opened = tokio::select! {
            opened = follower.open() => opened,
            () = tx.closed() => return,
        };
        match opened {
            Ok(mut stream) => {
                let mut fresh = true;
                loop {
                    let message = tokio::select! {
                        m = stream.message() => m,
                        () = tx.closed() => return,
                    };
                    match message {
                        Ok(Some(message)) => {
                            if fresh {
                                backoff.reset();
                                failures = 0;
                            }
                            let state = follower.apply(message, fresh);
                            fresh = false;
                            tx.send_if_modified(|current| {
                                let changed = *current != state;
                                *current = state;
                                changed
                            });
                        }
                        Ok(None) => {
                            tracing::debug!("controller stream ended");
                            break;
                        }
                        Err(status) => {
                            note_failure(&mut failures, &status);
                            break;
                        }
                    }
                }
            }
            Err(status) => note_failure(&mut failures, &status),
        }
        let wait = backoff.next_wait();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = tx.closed() => return,
        }
    }
}

fn note_failure(failures: &mut u32, status: &Status) {
    *failures += 1;
    if *failures == 1 {
        tracing::warn!(code = ?status.code(), message = status.message(), "controller unavailable; keeping the last answer and retrying");
    } else {
        tracing::debug!(code = ?status.code(), message = status.message(), failures = *failures, "controller still unavailable");
    }
}

/// `Get`: endpoint updates into a [`Resolution`].
pub(crate) struct EndpointsFollower {
    client: DestinationClient<Channel>,
    request: api::GetDestination,
    endpoints: BTreeMap<SocketAddr, EndpointMeta>,
    exists: bool,
}

impl EndpointsFollower {
    pub(crate) fn new(client: DestinationClient<Channel>, request: api::GetDestination) -> Self {
        Self {
            client,
            request,
            endpoints: BTreeMap::new(),
            exists: false,
        }
    }
}

impl Follower for EndpointsFollower {
    type Message = api::Update;
    type State = Resolution;

    fn open(&mut self) -> impl Future<Output = Result<Streaming<api::Update>, Status>> + Send {
        let mut client = self.client.clone();
        let request = self.request.clone();
        async move { Ok(client.get(request).await?.into_inner()) }
    }

    fn apply(&mut self, update: api::Update, fresh: bool) -> Resolution {
        use api::update::Update as U;
        if fresh {
            self.endpoints.clear();
        }
        match update.update {
            Some(U::Add(set)) => {
                self.exists = true;
                for addr in &set.addrs {
                    let Some(wire) = &addr.addr else { continue };
                    match SocketAddr::try_from(wire) {
                        Ok(sa) => {
                            self.endpoints
                                .insert(sa, EndpointMeta::from_api(addr, &set.metric_labels));
                        }
                        Err(error) => tracing::warn!(%error, "ignoring an endpoint"),
                    }
                }
            }
            Some(U::Remove(set)) => {
                for wire in &set.addrs {
                    if let Ok(sa) = SocketAddr::try_from(wire) {
                        self.endpoints.remove(&sa);
                    }
                }
            }
            Some(U::NoEndpoints(none)) => {
                self.endpoints.clear();
                self.exists = none.exists;
            }
            None => {}
        }
        if self.exists {
            Resolution::Known(Arc::new(self.endpoints.clone()))
        } else {
            Resolution::Unknown
        }
    }
}

/// `GetProfile`: each message is the whole profile.
pub(crate) struct ProfileFollower {
    client: DestinationClient<Channel>,
    request: api::GetDestination,
}

impl ProfileFollower {
    pub(crate) fn new(client: DestinationClient<Channel>, request: api::GetDestination) -> Self {
        Self { client, request }
    }
}

impl Follower for ProfileFollower {
    type Message = api::DestinationProfile;
    type State = Option<Arc<api::DestinationProfile>>;

    fn open(
        &mut self,
    ) -> impl Future<Output = Result<Streaming<api::DestinationProfile>, Status>> + Send {
        let mut client = self.client.clone();
        let request = self.request.clone();
        async move { Ok(client.get_profile(request).await?.into_inner()) }
    }

    fn apply(&mut self, profile: api::DestinationProfile, _fresh: bool) -> Self::State {
        Some(Arc::new(profile))
    }
}

/// `WatchPort`: each message is the port's whole policy.
pub(crate) struct PolicyFollower {
    client: InboundPoliciesClient<Channel>,
    request: policy::PortRequest,
}

impl PolicyFollower {
    pub(crate) fn new(
        client: InboundPoliciesClient<Channel>,
        request: policy::PortRequest,
    ) -> Self {
        Self { client, request }
    }
}

impl Follower for PolicyFollower {
    type Message = policy::InboundServer;
    type State = Option<Arc<policy::InboundServer>>;

    fn open(
        &mut self,
    ) -> impl Future<Output = Result<Streaming<policy::InboundServer>, Status>> + Send {
        let mut client = self.client.clone();
        let request = self.request.clone();
        async move { Ok(client.watch_port(request).await?.into_inner()) }
    }

    fn apply(&mut self, server: policy::InboundServer, _fresh: bool) -> Self::State {
        Some(Arc::new(server))
    }
}
