//! The open taps of a proxy, their limits, and the channels their events go through.

use crate::filter::{Facts, Match, Truth};
use conduit_api::tap::TapEvent;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Requests one tap may take at most (and its default).
pub const MAX_LIMIT: u32 = 10_000;
/// Requests per second one tap may take at most (and its default).
pub const MAX_RPS: f64 = 100.0;
/// Events buffered per tap for a slow reader; beyond this, events are dropped.
pub const EVENT_BUFFER: usize = 1_000;

/// A proxy's open taps. Cloning shares them.
#[derive(Clone, Debug, Default)]
pub struct Taps {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// How many taps are open: the one thing a request reads when none is.
    active: AtomicUsize,
    taps: RwLock<Vec<Arc<Tap>>>,
    next_tap: AtomicU64,
}

/// One open tap.
#[derive(Debug)]
pub(crate) struct Tap {
    key: u64,
    filter: Match,
    tx: mpsc::Sender<TapEvent>,
    remaining: AtomicU32,
    rate: Mutex<Bucket>,
    next_request: AtomicU64,
    registry: Weak<Inner>,
}

/// A token bucket of `per_second` tokens a second, holding at most one second's worth (and
/// at least one token, so that a rate under 1/s still lets requests through).
#[derive(Debug)]
struct Bucket {
    per_second: f64,
    tokens: f64,
    last: Instant,
}

/// An open tap's events, until its limit is reached and its last request has ended.
/// Dropping it closes the tap.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<TapEvent>,
    _close: Close,
}

#[derive(Debug)]
struct Close {
    key: u64,
    registry: Weak<Inner>,
}

/// How a matched request stands with one tap.
#[derive(Debug)]
pub(crate) enum Seen {
    /// Taken: its events go to the tap under `id`, unless one was lost.
    Taken { tap: Arc<Tap>, id: u64, lost: bool },
    /// The filter depends on facts known at response time.
    Undecided(Arc<Tap>),
}

impl Taps {
    /// No taps.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether any tap is open: a single atomic load.
    #[inline]
    pub fn is_active(&self) -> bool {
        self.inner.active.load(Ordering::Relaxed) != 0
    }

    /// Opens a tap for at most `limit` requests (0: [`MAX_LIMIT`]) at `max_rps` a second
    /// at most (0 or less: [`MAX_RPS`]).
    pub fn subscribe(&self, filter: Match, limit: u32, max_rps: f64) -> Subscription {
        let limit = if limit == 0 {
            MAX_LIMIT
        } else {
            limit.min(MAX_LIMIT)
        };
        let per_second = if max_rps.is_finite() && max_rps > 0.0 {
            max_rps.min(MAX_RPS)
        } else {
            MAX_RPS
        };
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let key = self.inner.next_tap.fetch_add(1, Ordering::Relaxed);
        let tap = Arc::new(Tap {
            key,
            filter,
            tx,
            remaining: AtomicU32::new(limit),
            rate: Mutex::new(Bucket {
                per_second,
                tokens: per_second.max(1.0),
                last: Instant::now(),
            }),
            next_request: AtomicU64::new(0),
            registry: Arc::downgrade(&self.inner),
        });
        let mut taps = self
            .inner
            .taps
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        taps.push(tap);
        self.inner.active.store(taps.len(), Ordering::Relaxed);
        drop(taps);
        Subscription {
            rx,
            _close: Close {
                key,
                registry: Arc::downgrade(&self.inner),
            },
        }
    }

    /// The taps interested in a request, with what is known of it at request time.
    pub(crate) fn inspect(&self, facts: &Facts<'_>) -> Vec<Seen> {
        let taps = self
            .inner
            .taps
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut seen = Vec::new();
        let mut exhausted = Vec::new();
        for tap in taps.iter() {
            match tap.filter.eval(facts) {
                Truth::No => {}
                Truth::Yes => {
                    if let Some((taken, last)) = tap.take() {
                        seen.push(taken);
                        if last {
                            exhausted.push(tap.key);
                        }
                    }
                }
                Truth::Unknown => seen.push(Seen::Undecided(tap.clone())),
            }
        }
        // Removal takes the write lock: only once the read lock is released.
        drop(taps);
        for key in exhausted {
            self.inner.remove(key);
        }
        seen
    }

    /// Open taps, for metrics and tests.
    pub fn len(&self) -> usize {
        self.inner.active.load(Ordering::Relaxed)
    }

    /// Whether no tap is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn remove(&self, key: u64) {
        let mut taps = self.taps.write().unwrap_or_else(PoisonError::into_inner);
        taps.retain(|t| t.key != key);
        self.active.store(taps.len(), Ordering::Relaxed);
    }
}

impl Tap {
    /// Takes a request if the limit and the rate allow; `true` with the last one the limit
    /// allows, after which the tap must leave the registry.
    fn take(self: &Arc<Self>) -> Option<(Seen, bool)> {
        if self.tx.is_closed() {
            return None;
        }
        {
            let mut bucket = self.rate.lock().unwrap_or_else(PoisonError::into_inner);
            if !bucket.take(Instant::now()) {
                return None;
            }
        }
        let left = self
            .remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .ok()?;
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let seen = Seen::Taken {
            tap: self.clone(),
            id,
            lost: false,
        };
        Some((seen, left == 1))
    }

    /// Takes a request decided at response time (no registry lock is held then), closing
    /// the tap if that was its last.
    pub(crate) fn take_late(self: &Arc<Self>) -> Option<Seen> {
        let (seen, last) = self.take()?;
        if last {
            if let Some(registry) = self.registry.upgrade() {
                registry.remove(self.key);
            }
        }
        Some(seen)
    }

    pub(crate) fn filter(&self) -> &Match {
        &self.filter
    }

    /// Sends without waiting: `false` when the reader is behind (or gone) and the event
    /// was dropped.
    pub(crate) fn send(&self, event: TapEvent) -> bool {
        self.tx.try_send(event).is_ok()
    }
}

impl Bucket {
    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.per_second.max(1.0));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Subscription {
    /// The next event; `None` once the tap has taken its limit and every taken request has
    /// ended.
    pub async fn recv(&mut self) -> Option<TapEvent> {
        self.rx.recv().await
    }
}

/// The events as a stream, for a gRPC response.
impl tokio_stream::Stream for Subscription {
    type Item = TapEvent;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<TapEvent>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

impl Drop for Close {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::Labels;

    fn facts(labels: &Labels) -> Facts<'_> {
        Facts {
            source: "10.0.0.1:1000".parse().unwrap(),
            destination: "10.0.0.2:80".parse().unwrap(),
            method: &http::Method::GET,
            authority: None,
            path: "/",
            source_labels: Some(labels),
            destination_labels: Some(labels),
            route: Some(None),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_tap_closes_to_new_requests_at_its_limit() {
        let taps = Taps::new();
        assert!(!taps.is_active());
        let sub = taps.subscribe(Match::everything(), 3, 1000.0);
        assert!(taps.is_active());
        let labels = Labels::new();
        let taken: usize = (0..5).map(|_| taps.inspect(&facts(&labels)).len()).sum();
        assert_eq!(taken, 3);
        assert!(!taps.is_active(), "a tap at its limit leaves the registry");
        drop(sub);
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_skips_requests_beyond_it() {
        let taps = Taps::new();
        let _sub = taps.subscribe(Match::everything(), 0, 10.0);
        let labels = Labels::new();
        let mut taken = 0;
        // 100 requests over one second: the bucket starts full (10) and refills 10/s.
        for _ in 0..100 {
            taken += taps.inspect(&facts(&labels)).len();
            tokio::time::advance(std::time::Duration::from_millis(10)).await;
        }
        assert!((18..=21).contains(&taken), "{taken}");
    }

    #[tokio::test]
    async fn dropping_the_subscription_closes_the_tap() {
        let taps = Taps::new();
        let sub = taps.subscribe(Match::everything(), 0, 0.0);
        let other = taps.subscribe(Match::everything(), 0, 0.0);
        assert_eq!(taps.len(), 2);
        drop(sub);
        assert_eq!(taps.len(), 1);
        drop(other);
        assert!(taps.is_empty());
    }

    #[tokio::test]
    async fn a_full_buffer_drops_events_instead_of_waiting() {
        let taps = Taps::new();
        let mut sub = taps.subscribe(Match::everything(), 0, 0.0);
        let labels = Labels::new();
        let Some(Seen::Taken { tap, .. }) = taps.inspect(&facts(&labels)).pop() else {
            panic!("not taken");
        };
        let sent = (0..EVENT_BUFFER + 10)
            .filter(|_| tap.send(TapEvent::default()))
            .count();
        assert_eq!(sent, EVENT_BUFFER);
        assert!(sub.recv().await.is_some());
    }
}
