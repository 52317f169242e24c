use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn incr(&self) {
        self.add(1)
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds one.
    pub fn incr(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Subtracts one.
    pub fn decr(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Linkerd's latency bucket bounds, in milliseconds.
pub const LATENCY_BOUNDS_MS: [u64; 25] = [
    1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1_000, 2_000, 3_000, 4_000, 5_000,
    10_000, 20_000, 30_000, 40_000, 50_000,
];

/// A latency histogram with [`LATENCY_BOUNDS_MS`] buckets, kept in microseconds so that
/// sub-millisecond latencies still add up to a truthful sum.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BOUNDS_MS.len() + 1],
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one observation.
    pub fn record(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let idx = LATENCY_BOUNDS_MS
            .iter()
            .position(|&bound_ms| us <= bound_ms * 1000)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.buckets[idx].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Cumulative counts per bound, the last for `+Inf`.
    pub fn cumulative(&self) -> [u64; LATENCY_BOUNDS_MS.len() + 1] {
        let mut total = 0;
        std::array::from_fn(|i| {
            total += self.buckets[i].load(Ordering::Relaxed);
            total
        })
    }

    /// The sum of observations, in milliseconds.
    pub fn sum_ms(&self) -> f64 {
        self.sum_us.load(Ordering::Relaxed) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::default();
        h.record(Duration::from_micros(300));
        h.record(Duration::from_millis(1));
        h.record(Duration::from_micros(1001));
        h.record(Duration::from_secs(3600));
        let c = h.cumulative();
        assert_eq!(c[0], 2, "<= 1ms");
        assert_eq!(c[1], 3, "<= 2ms");
        assert_eq!(c[LATENCY_BOUNDS_MS.len() - 1], 3, "<= 50s");
        assert_eq!(c[LATENCY_BOUNDS_MS.len()], 4, "+Inf");
        assert!((h.sum_ms() - 3_600_002.301).abs() < 1e-6);
    }

    #[test]
    fn gauges_go_both_ways() {
        let g = Gauge::default();
        g.incr();
        g.incr();
        g.decr();
        assert_eq!(g.get(), 1);
    }
}
