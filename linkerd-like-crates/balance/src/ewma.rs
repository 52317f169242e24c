use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// One endpoint's load: a peak-EWMA latency estimate and its requests in flight.
#[derive(Debug)]
pub struct PeakEwma {
    estimate: Mutex<Estimate>,
    in_flight: AtomicUsize,
    decay: Duration,
}

#[derive(Debug)]
struct Estimate {
    /// Nanoseconds.
    rtt: f64,
    stamp: Instant,
}

impl PeakEwma {
    /// Starts at `initial` (a guess before any response), decaying with time constant `decay`.
    pub fn new(initial: Duration, decay: Duration) -> Arc<Self> {
        Arc::new(Self {
            estimate: Mutex::new(Estimate {
                rtt: initial.as_nanos() as f64,
                stamp: Instant::now(),
            }),
            in_flight: AtomicUsize::new(0),
            decay,
        })
    }

    fn decayed(&self, e: &Estimate, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(e.stamp).as_nanos() as f64;
        let tau = self.decay.as_nanos().max(1) as f64;
        e.rtt * (-elapsed / tau).exp()
    }

    /// The load now: the decayed estimate times (requests in flight + 1).
    pub fn load(&self) -> f64 {
        let now = Instant::now();
        let rtt = {
            let e = self.estimate.lock().unwrap_or_else(PoisonError::into_inner);
            self.decayed(&e, now)
        };
        let pending = self.in_flight.load(Ordering::Relaxed) as f64;
        // A floor, so that an idle endpoint still counts its requests in flight.
        (rtt + 1.0) * (pending + 1.0)
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Marks a request in flight until the returned handle is dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            ewma: self.clone(),
            start: Instant::now(),
            observed: false,
        }
    }

    fn observe(&self, rtt: Duration, now: Instant) {
        let rtt = rtt.as_nanos() as f64;
        let mut e = self.estimate.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(e.stamp).as_nanos() as f64;
        let w = (-elapsed / self.decay.as_nanos().max(1) as f64).exp();
        // The estimate as read now is the stored one decayed by `w` (Finagle's `observe(0)`);
        // a sample moves it by the same weight, so a busy endpoint's estimate drifts toward
        // its latency exactly as fast as an idle one's decays toward zero.
        let current = e.rtt * w;
        e.rtt = if rtt > current {
            // The peak: a slow response counts in full at once.
            rtt
        } else {
            current + rtt * (1.0 - w)
        };
        e.stamp = now;
    }
}

/// A request in flight to an endpoint. [`InFlight::observe`] records its latency when the
/// response comes; dropping it ends the request either way.
#[derive(Debug)]
pub struct InFlight {
    ewma: Arc<PeakEwma>,
    start: Instant,
    observed: bool,
}

impl InFlight {
    /// Records the time from the start to now as a latency sample.
    pub fn observe(&mut self) {
        self.observe_excluding(Duration::ZERO);
    }

    /// Records the request's latency less `setup` (time spent connecting); only the first
    /// observation counts.
    pub fn observe_excluding(&mut self, setup: Duration) {
        if !self.observed {
            self.observed = true;
            let now = Instant::now();
            let rtt = now
                .saturating_duration_since(self.start)
                .saturating_sub(setup);
            self.ewma.observe(rtt, now);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.ewma.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECAY: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn a_slow_response_counts_at_once_and_fast_ones_pull_it_down() {
        let ewma = PeakEwma::new(Duration::from_millis(1), DECAY);
        let mut r = ewma.start();
        assert_eq!(ewma.in_flight(), 1);
        tokio::time::advance(Duration::from_millis(100)).await;
        r.observe();
        drop(r);
        assert_eq!(ewma.in_flight(), 0);
        let after_slow = ewma.load();
        assert!((after_slow - 100e6).abs() < 1e6, "{after_slow}");

        for _ in 0..50 {
            let mut r = ewma.start();
            tokio::time::advance(Duration::from_millis(1)).await;
            r.observe();
        }
        assert!(
            ewma.load() < after_slow,
            "fast responses pull the estimate down"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn load_grows_with_requests_in_flight_and_decays_when_idle() {
        let ewma = PeakEwma::new(Duration::from_millis(10), DECAY);
        let base = ewma.load();
        let a = ewma.start();
        let b = ewma.start();
        assert!((ewma.load() / base - 3.0).abs() < 0.01);
        drop((a, b));
        tokio::time::advance(DECAY * 3).await;
        assert!(
            ewma.load() < base / 10.0,
            "an idle endpoint's estimate decays"
        );
    }
}
