use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Significant figures the latency histograms keep: values are exact to within 1%.
pub const LATENCY_SIGFIG: u8 = 2;

/// Latencies in microseconds, in an HDR histogram, for percentiles that are exact to within
/// the histogram's precision rather than guessed from coarse buckets.
///
/// The histogram is made at the first record and grows with the largest value recorded:
/// sub-millisecond latencies keep it near 2 KiB, one-second ones near 8 KiB.
#[derive(Debug, Default)]
pub struct HdrLatency(Mutex<Option<hdrhistogram::Histogram<u64>>>);

impl HdrLatency {
    /// Records one latency.
    pub fn record(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let mut h = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if h.is_none() {
            *h = hdrhistogram::Histogram::new(LATENCY_SIGFIG).ok();
        }
        if let Some(h) = h.as_mut() {
            // `record` grows the histogram to fit; `saturating_record` would clamp to its
            // current top. Only a value too large to ever fit falls back to the clamp.
            if h.record(us.max(1)).is_err() {
                h.saturating_record(us.max(1));
            }
        }
    }

    /// The recorded values: `(microseconds, count)` for each bucket with a count, where the
    /// value is the highest the bucket holds. Recording these into a histogram of the same
    /// precision rebuilds this one exactly.
    pub fn recorded(&self) -> Vec<(u64, u64)> {
        let h = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        h.as_ref().map_or_else(Vec::new, |h| {
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_rebuild_an_equal_histogram() {
        let l = HdrLatency::default();
        assert!(l.recorded().is_empty());
        for us in [5, 100, 100, 1_234, 987_654, 3_000_000_000] {
            l.record(Duration::from_micros(us));
        }
        let recorded = l.recorded();
        assert_eq!(recorded.iter().map(|(_, n)| n).sum::<u64>(), 6);
        let mut rebuilt = hdrhistogram::Histogram::<u64>::new(LATENCY_SIGFIG).unwrap();
        for (v, n) in &recorded {
            rebuilt.record_n(*v, *n).unwrap();
        }
        let again: Vec<(u64, u64)> = rebuilt
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        assert_eq!(again, recorded);
        // Within 1% of what was recorded.
        let p50 = rebuilt.value_at_quantile(0.5) as f64;
        assert!((100.0..=101.0).contains(&p50), "{p50}");
        let max = rebuilt.value_at_quantile(1.0) as f64;
        assert!((max / 3e9 - 1.0).abs() < 0.01, "{max}");
    }
}
