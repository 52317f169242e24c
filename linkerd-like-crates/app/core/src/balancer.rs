//! Per-authority balancers fed by the controller.
//!
//! A [`Balancer`] follows one authority's endpoints (a `Get` stream, shared by every
//! connection to that authority through [`Discover`]'s idle-evicting cache) and picks an
//! endpoint per request with P2C over peak-EWMA. What it answers:
//!
//! - endpoints known: one of them;
//! - the controller does not know the name: [`Choice::Fallback`] (the original destination,
//!   or DNS in explicit mode);
//! - the service exists but has no endpoints: the request waits, in a bounded queue, for
//!   endpoints to appear, and fails with 503 when the queue timeout passes or the queue is
//!   full;
//! - no answer yet from the controller: the request waits likewise; if the controller has not
//!   answered by the timeout the balancer falls back, and keeps falling back at once until an
//!   answer comes, so an unreachable controller costs one wait, not one per request.

use conduit_addr::Addr;
use conduit_api::destination::DestinationProfile;
use conduit_balance::{Picked, Pool};
use conduit_discovery::{Resolution, Resolve, Resolved};
use conduit_http::client::{Client, Endpoint, NewClient};
use conduit_http::{ErrorStatus, Http};
use conduit_route::Routes;
use conduit_stack::{NewCache, NewService};
use conduit_tap::DestinationLabels;
use conduit_tls::Name;
use http::StatusCode;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Semaphore;

/// A new endpoint's latency estimate before its first response (linkerd2-proxy's default).
const INITIAL_RTT: Duration = Duration::from_millis(30);
/// How fast latency estimates decay.
const DECAY: Duration = Duration::from_secs(10);

/// How requests wait for endpoints.
#[derive(Clone, Copy, Debug)]
pub struct QueueConfig {
    /// The longest a request waits for endpoints.
    pub timeout: Duration,
    /// Requests that may wait at once per authority; more fail at once with 503.
    pub capacity: usize,
}

impl Default for QueueConfig {
    /// 1,024 waiting requests, Envoy's default bound on pending requests: room for the burst
    /// a pool of clients opens at start-up (four HTTP/2 connections of 128 streams each),
    /// which meets a service the controller has not answered for yet. A waiting request
    /// holds its future and head, a few KiB, so the bound also caps that memory.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3),
            capacity: 1024,
        }
    }
}

/// The balancers of a proxy, one per authority and protocol, evicted when idle.
///
/// Endpoints with an identity are reached over mTLS when `clients` can (the proxy has an
/// identity); otherwise in plaintext.
#[derive(Clone, Debug)]
pub struct Discover {
    balancers: Arc<NewCache<(Addr, Http), NewBalancer>>,
}

impl Discover {
    /// Balancers following `discovery` (the controller, normally), with endpoint clients from
    /// `clients`.
    pub fn new(
        discovery: Arc<dyn Resolve>,
        clients: NewCache<Endpoint, NewClient>,
        queue: QueueConfig,
        idle: Duration,
        mtls: bool,
    ) -> Self {
        let new = NewBalancer {
            discovery,
            clients,
            queue,
            mtls,
        };
        Self {
            balancers: Arc::new(NewCache::new(new, idle)),
        }
    }

    /// The balancer for `addr`, speaking `http` to endpoints.
    ///
    /// Keyed by the address itself: a request that names an IP needs no text made for it
    /// (its `host:port` is written once, when its balancer is built).
    pub fn balancer(&self, addr: Addr, http: Http) -> Arc<Balancer> {
        self.balancers.new_service((addr, http))
    }
}

/// Builds a [`Balancer`] per authority.
#[derive(Clone, Debug)]
pub struct NewBalancer {
    discovery: Arc<dyn Resolve>,
    clients: NewCache<Endpoint, NewClient>,
    queue: QueueConfig,
    mtls: bool,
}

impl NewService<(Addr, Http)> for NewBalancer {
    type Service = Arc<Balancer>;

    fn new_service(&self, (addr, http): (Addr, Http)) -> Arc<Balancer> {
        let authority = addr.to_string();
        let resolved = self.discovery.resolve(&authority);
        let profile = self.discovery.profile(&authority);
        Arc::new(Balancer {
            profile: Mutex::new(ProfileState {
                resolved: profile,
                routes: Arc::default(),
            }),
            authority,
            http,
            clients: self.clients.clone(),
            pool: Pool::new(INITIAL_RTT, DECAY),
            state: Mutex::new(State {
                resolved,
                kind: Kind::Pending,
                gave_up_waiting: false,
                first: true,
            }),
            waiting: Semaphore::new(self.queue.capacity),
            queue: self.queue,
            mtls: self.mtls,
        })
    }
}

/// One authority's endpoints and their pool.
#[derive(Debug)]
pub struct Balancer {
    authority: String,
    http: Http,
    clients: NewCache<Endpoint, NewClient>,
    pool: Pool<SocketAddr, Backend>,
    state: Mutex<State>,
    profile: Mutex<ProfileState>,
    waiting: Semaphore,
    queue: QueueConfig,
    mtls: bool,
}

#[derive(Debug)]
struct ProfileState {
    resolved: Resolved<Option<Arc<DestinationProfile>>>,
    routes: Arc<Routes>,
}

#[derive(Debug)]
struct State {
    resolved: Resolved<Resolution>,
    kind: Kind,
    /// The controller did not answer within a queue timeout: fall back until it does.
    gave_up_waiting: bool,
    first: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Pending,
    Unknown,
    Known,
}

/// A balanced endpoint: its client, and its labels from discovery (which a response from
/// it carries, for taps).
#[derive(Clone, Debug)]
pub struct Backend {
    /// The endpoint's client.
    pub client: Client,
    /// Its workload's labels, if discovery gave any.
    pub labels: Option<DestinationLabels>,
    /// Its proxy's inbound port for opaque TCP, when discovery gave one.
    pub opaque_transport: Option<u16>,
}

/// Where a request goes.
#[derive(Debug)]
pub enum Choice {
    /// To this endpoint; call [`Picked::observe`] when its response arrives.
    Endpoint(Picked<SocketAddr, Backend>),
    /// The controller does not know the name: resolve it another way.
    Fallback,
}

impl Balancer {
    /// The authority balanced.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The endpoints' addresses now.
    pub fn endpoints(&self) -> Vec<SocketAddr> {
        self.pool.keys()
    }

    /// The authority's profile routes (none until the controller sends a profile).
    pub fn routes(&self) -> Arc<Routes> {
        let mut profile = self.profile.lock().unwrap_or_else(PoisonError::into_inner);
        if profile.resolved.has_changed() {
            if let Some(p) = profile.resolved.update() {
                profile.routes = Arc::new(Routes::from_profile(&p));
                tracing::debug!(authority = %self.authority, routes = profile.routes.len(), "profile changed");
            }
        }
        profile.routes.clone()
    }

    /// Applies the latest resolution, if it changed; returns what is known and a handle to
    /// wait on for the next change.
    fn refresh(&self) -> (Kind, bool) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.first || state.resolved.has_changed() {
            state.first = false;
            match state.resolved.update() {
                Resolution::Pending => state.kind = Kind::Pending,
                Resolution::Unknown => {
                    state.kind = Kind::Unknown;
                    state.gave_up_waiting = false;
                    self.pool.clear();
                }
                Resolution::Known(set) => {
                    state.kind = Kind::Known;
                    state.gave_up_waiting = false;
                    let http = self.http;
                    self.pool
                        .set(set.iter().map(|(a, m)| (*a, m.weight)), |addr| {
                            // An endpoint whose proxy has an identity is reached over mTLS,
                            // when this proxy has one too.
                            let meta = set.get(addr);
                            let tls = meta
                                .and_then(|m| m.identity.as_deref())
                                .filter(|_| self.mtls)
                                .and_then(|id| Name::parse(id).ok());
                            let client = self.clients.new_service(Endpoint {
                                addr: *addr,
                                http,
                                tls,
                            });
                            let labels = meta
                                .filter(|m| !m.labels.is_empty())
                                .map(|m| DestinationLabels(Arc::new(m.labels.clone())));
                            Backend {
                                client,
                                labels,
                                opaque_transport: meta.and_then(|m| m.opaque_transport),
                            }
                        });
                    tracing::debug!(authority = %self.authority, endpoints = set.len(), "endpoints changed");
                }
            }
        }
        (state.kind, state.gave_up_waiting)
    }

    fn give_up_waiting(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.kind == Kind::Pending {
            state.gave_up_waiting = true;
        }
    }

    fn watcher(&self) -> Resolved<Resolution> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .resolved
            .clone()
    }

    /// Chooses where one request goes if that needs no waiting; `None` when the request would
    /// have to wait for endpoints. Callers decide most requests here, with no future to hold.
    pub fn choose_now(&self) -> Option<Choice> {
        match self.refresh() {
            (Kind::Unknown, _) | (Kind::Pending, true) => Some(Choice::Fallback),
            (Kind::Known, _) => self.pool.pick().map(Choice::Endpoint),
            (Kind::Pending, false) => None,
        }
    }

    /// Chooses where one request goes, waiting (bounded) for endpoints when there are none.
    pub async fn choose(&self) -> Result<Choice, ErrorStatus> {
        let deadline = tokio::time::Instant::now() + self.queue.timeout;
        let mut permit = None;
        loop {
            if let Some(choice) = self.choose_now() {
                return Ok(choice);
            }
            if permit.is_none() {
                permit = Some(self.waiting.try_acquire().map_err(|_| {
                    ErrorStatus::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "too many requests waiting for endpoints of {}",
                            self.authority
                        ),
                    )
                })?);
            }
            // A clone seen up to the state just applied: a change made since then wakes it.
            let mut watcher = self.watcher();
            if tokio::time::timeout_at(deadline, watcher.changed())
                .await
                .is_err()
            {
                return match self.refresh() {
                    (Kind::Pending, _) => {
                        tracing::info!(authority = %self.authority, "no answer from the controller; falling back");
                        self.give_up_waiting();
                        Ok(Choice::Fallback)
                    }
                    _ => Err(ErrorStatus::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("no endpoints for {}", self.authority),
                    )),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_discovery::EndpointMeta;
    use std::collections::BTreeMap;
    use tokio::sync::watch;

    /// Resolutions published by the test.
    #[derive(Debug)]
    struct Fixed(watch::Receiver<Resolution>);

    impl Resolve for Fixed {
        fn resolve(&self, _: &str) -> Resolved<Resolution> {
            Resolved::from_receiver(self.0.clone())
        }
        fn profile(&self, _: &str) -> Resolved<Option<Arc<DestinationProfile>>> {
            Resolved::from_receiver(watch::channel(None).1)
        }
    }

    fn balancer(
        initial: Resolution,
        capacity: usize,
    ) -> (Arc<Balancer>, watch::Sender<Resolution>) {
        let (tx, rx) = watch::channel(initial);
        let clients = NewCache::new(NewClient::default(), Duration::from_secs(60));
        let queue = QueueConfig {
            timeout: Duration::from_secs(1),
            capacity,
        };
        let discover = Discover::new(
            Arc::new(Fixed(rx)),
            clients,
            queue,
            Duration::from_secs(60),
            false,
        );
        (
            discover.balancer("books:7001".parse().expect("addr"), Http::Http1),
            tx,
        )
    }

    fn known(addrs: &[&str]) -> Resolution {
        let set: BTreeMap<SocketAddr, EndpointMeta> = addrs
            .iter()
            .map(|a| {
                (
                    a.parse().unwrap(),
                    EndpointMeta {
                        weight: 1,
                        ..Default::default()
                    },
                )
            })
            .collect();
        Resolution::Known(Arc::new(set))
    }

    #[tokio::test(start_paused = true)]
    async fn known_endpoints_are_chosen_and_unknown_names_fall_back() {
        let (b, tx) = balancer(known(&["10.0.0.1:80"]), 10);
        let Choice::Endpoint(p) = b.choose().await.unwrap() else {
            panic!("an endpoint")
        };
        assert_eq!(*p.key(), "10.0.0.1:80".parse().unwrap());
        tx.send(Resolution::Unknown).unwrap();
        assert!(matches!(b.choose().await.unwrap(), Choice::Fallback));
    }

    #[tokio::test(start_paused = true)]
    async fn choosing_now_answers_only_what_needs_no_waiting() {
        let (b, tx) = balancer(known(&["10.0.0.1:80"]), 10);
        let Some(Choice::Endpoint(p)) = b.choose_now() else {
            panic!("an endpoint")
        };
        assert_eq!(*p.key(), "10.0.0.1:80".parse().unwrap());
        tx.send(known(&[])).unwrap();
        assert!(
            b.choose_now().is_none(),
            "no endpoints: the request must wait"
        );
        tx.send(Resolution::Unknown).unwrap();
        assert!(matches!(b.choose_now(), Some(Choice::Fallback)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_service_queues_then_answers_503_and_endpoints_arriving_release_the_queue() {
        let (b, tx) = balancer(known(&[]), 10);
        let started = tokio::time::Instant::now();
        let err = b.choose().await.unwrap_err();
        assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            err.reason.contains("no endpoints for books:7001"),
            "{}",
            err.reason
        );
        assert_eq!(started.elapsed(), Duration::from_secs(1));

        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.choose().await.map(|c| matches!(c, Choice::Endpoint(_))) }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        tx.send(known(&["10.0.0.2:80"])).unwrap();
        assert!(
            waiting.await.unwrap().unwrap(),
            "released by the new endpoint"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_refuses_at_once() {
        let (b, _tx) = balancer(known(&[]), 1);
        let first = tokio::spawn({
            let b = b.clone();
            async move { b.choose().await.is_err() }
        });
        tokio::task::yield_now().await;
        let started = tokio::time::Instant::now();
        let err = b.choose().await.unwrap_err();
        assert!(
            err.reason.contains("too many requests waiting"),
            "{}",
            err.reason
        );
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert!(first.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_start_up_burst_waits_for_the_controller_rather_than_failing() {
        // Four HTTP/2 connections of 128 streams each, all sent before the controller's
        // first answer: as h2load 4x32 found against a cold meshed pair, where a queue of
        // 100 turned the rest of the first burst into 503s.
        let (b, tx) = balancer(Resolution::Pending, QueueConfig::default().capacity);
        let burst: Vec<_> = (0..512)
            .map(|_| {
                let b = b.clone();
                tokio::spawn(async move { b.choose().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(5)).await;
        tx.send(known(&["10.0.0.4:80"])).unwrap();
        for waiting in burst {
            let choice = waiting.await.unwrap();
            assert!(matches!(choice, Ok(Choice::Endpoint(_))), "{choice:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_controller_costs_one_wait_then_requests_fall_back_at_once() {
        let (b, tx) = balancer(Resolution::Pending, 10);
        let started = tokio::time::Instant::now();
        assert!(matches!(b.choose().await.unwrap(), Choice::Fallback));
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        let again = tokio::time::Instant::now();
        assert!(matches!(b.choose().await.unwrap(), Choice::Fallback));
        assert_eq!(again.elapsed(), Duration::ZERO, "no second wait");
        // The controller answers at last: endpoints are used again.
        tx.send(known(&["10.0.0.3:80"])).unwrap();
        assert!(matches!(b.choose().await.unwrap(), Choice::Endpoint(_)));
    }
}
