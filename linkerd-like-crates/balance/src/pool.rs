use crate::ewma::{InFlight, PeakEwma};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// Endpoints shared by many callers, each picked per request by P2C over peak-EWMA.
#[derive(Debug)]
pub struct Pool<K, E> {
    members: RwLock<Members<K, E>>,
    initial_rtt: Duration,
    decay: Duration,
}

/// A snapshot of the endpoints: pickers hold the read lock only to clone one entry.
type Members<K, E> = Arc<[Arc<Member<K, E>>]>;

#[derive(Debug)]
struct Member<K, E> {
    key: K,
    endpoint: E,
    weight: f64,
    ewma: Arc<PeakEwma>,
}

impl<K: Clone + Eq + Hash, E: Clone> Pool<K, E> {
    /// An empty pool. A new endpoint's latency estimate starts at `initial_rtt`; estimates
    /// decay with time constant `decay` (linkerd2-proxy uses 30 ms and 10 s).
    pub fn new(initial_rtt: Duration, decay: Duration) -> Self {
        Self {
            members: RwLock::new(Arc::from(Vec::new())),
            initial_rtt,
            decay,
        }
    }

    /// Sets the endpoints to `keys` with their weights. Endpoints that stay keep their
    /// endpoint value and load estimate; new ones are made by `make`; the rest are removed
    /// (requests in flight to them finish normally).
    pub fn set(&self, keys: impl IntoIterator<Item = (K, u32)>, mut make: impl FnMut(&K) -> E) {
        let current = self.snapshot();
        let mut by_key: HashMap<&K, &Arc<Member<K, E>>> =
            current.iter().map(|m| (&m.key, m)).collect();
        let next: Vec<Arc<Member<K, E>>> = keys
            .into_iter()
            .map(|(key, weight)| {
                let weight = f64::from(weight.max(1));
                match by_key.remove(&key) {
                    Some(m) if m.weight == weight => m.clone(),
                    Some(m) => Arc::new(Member {
                        key,
                        endpoint: m.endpoint.clone(),
                        weight,
                        ewma: m.ewma.clone(),
                    }),
                    None => Arc::new(Member {
                        endpoint: make(&key),
                        key,
                        weight,
                        ewma: PeakEwma::new(self.initial_rtt, self.decay),
                    }),
                }
            })
            .collect();
        *self.members.write().unwrap_or_else(PoisonError::into_inner) = Arc::from(next);
    }

    /// Removes every endpoint.
    pub fn clear(&self) {
        *self.members.write().unwrap_or_else(PoisonError::into_inner) = Arc::from(Vec::new());
    }

    fn snapshot(&self) -> Members<K, E> {
        self.members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Picks an endpoint for one request, or `None` when there are none.
    pub fn pick(&self) -> Option<Picked<K, E>> {
        let members = self.members.read().unwrap_or_else(PoisonError::into_inner);
        let i = crate::p2c(members.len(), |i| {
            let m = &members[i];
            m.ewma.load() / m.weight
        })?;
        let member = members[i].clone();
        drop(members);
        let in_flight = member.ewma.start();
        Some(Picked { member, in_flight })
    }

    /// The endpoints' keys.
    pub fn keys(&self) -> Vec<K> {
        self.snapshot().iter().map(|m| m.key.clone()).collect()
    }

    /// The number of endpoints.
    pub fn len(&self) -> usize {
        self.members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when there are no endpoints.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An endpoint picked for a request. Call [`Picked::observe`] when the response's headers
/// arrive; drop it when the request is over.
#[derive(Debug)]
pub struct Picked<K, E> {
    member: Arc<Member<K, E>>,
    in_flight: InFlight,
}

impl<K, E> Picked<K, E> {
    /// The endpoint.
    pub fn endpoint(&self) -> &E {
        &self.member.endpoint
    }

    /// Its key.
    pub fn key(&self) -> &K {
        &self.member.key
    }

    /// Records the latency of the response.
    pub fn observe(&mut self) {
        self.in_flight.observe_excluding(std::time::Duration::ZERO);
    }

    /// Records the latency of the response, less `setup` (time spent opening a connection,
    /// which says nothing of how fast the endpoint answers).
    pub fn observe_excluding(&mut self, setup: std::time::Duration) {
        self.in_flight.observe_excluding(setup);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn pool() -> Pool<&'static str, &'static str> {
        Pool::new(Duration::from_millis(30), Duration::from_secs(10))
    }

    fn spread(pool: &Pool<&'static str, &'static str>, n: usize) -> HashMap<&'static str, usize> {
        let mut counts = HashMap::new();
        for _ in 0..n {
            let mut p = pool.pick().unwrap();
            p.observe();
            *counts.entry(*p.key()).or_default() += 1;
        }
        counts
    }

    #[tokio::test(start_paused = true)]
    async fn equal_endpoints_share_evenly_and_weights_count() {
        let pool = pool();
        pool.set([("a", 1), ("b", 1), ("c", 1)], |k| k);
        let counts = spread(&pool, 3000);
        for k in ["a", "b", "c"] {
            assert!((800..1200).contains(&counts[k]), "{counts:?}");
        }
        pool.set([("a", 3), ("b", 1)], |k| k);
        let counts = spread(&pool, 1000);
        assert!(
            counts["a"] > 2 * counts.get("b").copied().unwrap_or(0),
            "{counts:?}"
        );
    }

    /// One request at a time, as light traffic is: no request is ever in flight when the
    /// next is picked, so only the latency estimates decide. Equal endpoints must still share.
    #[tokio::test(start_paused = true)]
    async fn equal_endpoints_share_light_sequential_traffic() {
        let pool = pool();
        pool.set([("a", 1), ("b", 1)], |k| k);
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for _ in 0..2000 {
            let mut p = pool.pick().unwrap();
            tokio::time::advance(Duration::from_millis(3)).await;
            p.observe();
            *counts.entry(*p.key()).or_default() += 1;
            drop(p);
            tokio::time::advance(Duration::from_millis(22)).await;
        }
        assert!(counts["a"] > 600 && counts["b"] > 600, "{counts:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_endpoint_gets_less_and_a_removed_one_none() {
        let pool = pool();
        pool.set([("a", 1), ("b", 1), ("c", 1)], |k| k);
        // "a" holds many requests in flight.
        let a = pool
            .snapshot()
            .iter()
            .find(|m| m.key == "a")
            .unwrap()
            .clone();
        let stuck: Vec<_> = (0..20).map(|_| a.ewma.start()).collect();
        let counts = spread(&pool, 1000);
        assert!(counts.get("a").copied().unwrap_or(0) < 50, "{counts:?}");

        pool.set([("b", 1), ("c", 1)], |k| k);
        let counts = spread(&pool, 1000);
        assert!(!counts.contains_key("a"), "{counts:?}");
        // Requests in flight to the removed endpoint are unaffected.
        assert_eq!(a.ewma.in_flight(), 20);
        drop(stuck);
        assert_eq!(a.ewma.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn staying_endpoints_keep_their_state() {
        let pool = pool();
        let mut made = Vec::new();
        pool.set([("a", 1), ("b", 1)], |k| {
            made.push(*k);
            k
        });
        pool.set([("b", 1), ("c", 1)], |k| {
            made.push(*k);
            k
        });
        assert_eq!(made, ["a", "b", "c"], "b was not made again");
        assert_eq!(pool.keys(), ["b", "c"]);
        pool.set(Vec::<(&str, u32)>::new(), |k| k);
        assert!(pool.pick().is_none());
    }
}
