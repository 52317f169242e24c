use crate::NewService;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::time::{Duration, Instant};

/// Caches the service built for each target and evicts the ones left idle.
///
/// Eviction is lazy: at most once per idle period, the next lookup sweeps out entries whose
/// last use is older than the idle timeout. A dropped entry only drops the cache's clone;
/// clones still held by callers (for example by an in-flight connection) keep working.
#[derive(Debug)]
pub struct NewCache<K, N: NewService<K>> {
    inner: N,
    idle: Duration,
    state: Arc<Mutex<State<K, N::Service>>>,
}

#[derive(Debug)]
struct State<K, S> {
    entries: HashMap<K, (S, Instant)>,
    last_sweep: Instant,
}

impl<K, N: NewService<K>> NewCache<K, N> {
    /// Caches services built by `inner`, dropping those unused for `idle`.
    pub fn new(inner: N, idle: Duration) -> Self {
        let state = State {
            entries: HashMap::new(),
            last_sweep: Instant::now(),
        };
        Self {
            inner,
            idle,
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// The number of cached targets.
    pub fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K, N> Clone for NewCache<K, N>
where
    N: NewService<K> + Clone,
{
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            idle: self.idle,
            state: self.state.clone(),
        }
    }
}

impl<K, N> NewService<K> for NewCache<K, N>
where
    K: Hash + Eq + Clone,
    N: NewService<K>,
    N::Service: Clone,
{
    type Service = N::Service;

    fn new_service(&self, target: K) -> N::Service {
        let now = Instant::now();
        // The lock is never held across an await: building a service is synchronous.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if now.saturating_duration_since(state.last_sweep) >= self.idle {
            let idle = self.idle;
            state
                .entries
                .retain(|_, (_, used)| now.saturating_duration_since(*used) < idle);
            state.last_sweep = now;
        }
        if let Some((svc, used)) = state.entries.get_mut(&target) {
            *used = now;
            return svc.clone();
        }
        let svc = self.inner.new_service(target.clone());
        state.entries.insert(target, (svc.clone(), now));
        svc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewFn;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counting() -> (
        Arc<AtomicUsize>,
        impl NewService<u16, Service = Arc<u16>> + Clone,
    ) {
        let built = Arc::new(AtomicUsize::new(0));
        let b = built.clone();
        let new = NewFn::new(move |port: u16| {
            b.fetch_add(1, Ordering::SeqCst);
            Arc::new(port)
        });
        (built, new)
    }

    #[tokio::test(start_paused = true)]
    async fn reuses_a_service_per_target() {
        let (built, new) = counting();
        let cache = NewCache::new(new, Duration::from_secs(60));
        let a = cache.new_service(1);
        let b = cache.new_service(1);
        assert!(Arc::ptr_eq(&a, &b));
        cache.new_service(2);
        assert_eq!(built.load(Ordering::SeqCst), 2);
        assert_eq!(cache.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn evicts_idle_targets_and_keeps_busy_ones() {
        let (built, new) = counting();
        let cache = NewCache::new(new, Duration::from_secs(60));
        cache.new_service(1);
        cache.new_service(2);
        tokio::time::advance(Duration::from_secs(40)).await;
        cache.new_service(2);
        tokio::time::advance(Duration::from_secs(30)).await;
        // Target 1 has been idle for 70s, target 2 for 30s.
        cache.new_service(3);
        assert_eq!(cache.len(), 2);
        cache.new_service(2);
        assert_eq!(built.load(Ordering::SeqCst), 3, "2 must still be cached");
        cache.new_service(1);
        assert_eq!(built.load(Ordering::SeqCst), 4, "1 must have been rebuilt");
    }
}
