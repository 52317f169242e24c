//! A proxy's answers over time, and what changed between two of them: the counts and
//! latencies of a window.

use conduit_api::stats as api;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// One proxy's answers, oldest first, kept for the retention.
#[derive(Debug, Default)]
pub struct History {
    samples: VecDeque<(Instant, Arc<api::ProxySnapshot>)>,
}

/// A response series' change over a window.
#[derive(Clone, Debug)]
pub struct SeriesDelta {
    /// The series (its labels; its count and latencies are the newest totals).
    pub series: Arc<api::ProxySnapshot>,
    /// Its index in `series.responses`.
    pub index: usize,
    /// Responses in the window.
    pub count: u64,
    /// Their latencies: `(microseconds, count)`.
    pub latency: Vec<(u64, u64)>,
}

impl SeriesDelta {
    /// The series' labels.
    pub fn labels(&self) -> &api::ResponseSeries {
        &self.series.responses[self.index]
    }
}

/// What one proxy counted in a window.
#[derive(Clone, Debug)]
pub struct Delta {
    /// How long the window really is (from the older answer to the newer).
    pub elapsed: Duration,
    /// The newest answer (its labels, identity and TCP gauges).
    pub latest: Arc<api::ProxySnapshot>,
    /// Each response series with responses in the window.
    pub responses: Vec<SeriesDelta>,
}

/// What tells series apart: every label, none of the counts.
fn key(s: &api::ResponseSeries) -> String {
    let dst: BTreeMap<&String, &String> = s.dst_labels.iter().collect();
    let tls = s.tls.clone().unwrap_or_default();
    format!(
        "{}|{}|{}|{}|{}|{}|{}|{}|{:?}",
        s.direction,
        s.authority,
        tls.tls,
        tls.client_id,
        tls.server_id,
        s.status,
        s.success,
        s.route,
        dst
    )
}

impl History {
    /// Adds the answer received at `at`, and forgets those older than `retention` (keeping
    /// one at least that old, so the longest window still has its start).
    pub fn push(&mut self, at: Instant, snapshot: api::ProxySnapshot, retention: Duration) {
        self.samples.push_back((at, Arc::new(snapshot)));
        while self.samples.len() > 2 && at.duration_since(self.samples[1].0) >= retention {
            self.samples.pop_front();
        }
    }

    /// The change from the answer a `window` before the newest (or the oldest, when the
    /// history is shorter) to the newest; `None` before two answers.
    pub fn delta(&self, window: Duration) -> Option<Delta> {
        let (now, latest) = self.samples.back()?;
        let (then, base) = self
            .samples
            .iter()
            .rev()
            .skip(1)
            .find(|(at, _)| now.duration_since(*at) >= window)
            .or_else(|| self.samples.front().filter(|(at, _)| at < now))?;
        let mut before: HashMap<String, &api::ResponseSeries> =
            base.responses.iter().map(|s| (key(s), s)).collect();
        // A proxy that restarted counts from zero again: its counts fell, so the older
        // answer is no base, and everything since its start is in the window.
        let restarted = latest
            .responses
            .iter()
            .any(|s| before.get(&key(s)).is_some_and(|b| b.count > s.count));
        if restarted {
            before.clear();
        }
        let responses = latest
            .responses
            .iter()
            .enumerate()
            .filter_map(|(index, s)| {
                let base = before.get(&key(s));
                let count = s.count - base.map_or(0, |b| b.count);
                if count == 0 {
                    return None;
                }
                let old: HashMap<u64, u64> = base
                    .map(|b| b.latency.iter().map(|l| (l.micros, l.count)).collect())
                    .unwrap_or_default();
                let latency = s
                    .latency
                    .iter()
                    .map(|l| {
                        let n = l
                            .count
                            .saturating_sub(old.get(&l.micros).copied().unwrap_or(0));
                        (l.micros, n)
                    })
                    .filter(|(_, n)| *n > 0)
                    .collect();
                Some(SeriesDelta {
                    series: latest.clone(),
                    index,
                    count,
                    latency,
                })
            })
            .collect();
        Some(Delta {
            elapsed: now.duration_since(*then),
            latest: latest.clone(),
            responses,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A series in a test: status, count, and `(micros, count)` buckets.
    type Series<'a> = (u32, u64, &'a [(u64, u64)]);
    type Counted = (u32, u64, Vec<(u64, u64)>);

    fn snapshot(series: &[Series<'_>]) -> api::ProxySnapshot {
        api::ProxySnapshot {
            responses: series
                .iter()
                .map(|(status, count, latency)| api::ResponseSeries {
                    status: *status,
                    count: *count,
                    latency: latency
                        .iter()
                        .map(|(micros, count)| api::Bucket {
                            micros: *micros,
                            count: *count,
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn counts(d: &Delta) -> Vec<Counted> {
        d.responses
            .iter()
            .map(|s| (s.labels().status, s.count, s.latency.clone()))
            .collect()
    }

    #[test]
    fn a_window_is_the_difference_from_the_answer_a_window_ago() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let retention = s(600);
        let mut h = History::default();
        h.push(t0, snapshot(&[(200, 10, &[(100, 10)])]), retention);
        assert!(h.delta(s(60)).is_none(), "one answer is no window");
        h.push(
            t0 + s(30),
            snapshot(&[(200, 15, &[(100, 12), (900, 3)])]),
            retention,
        );
        h.push(
            t0 + s(60),
            snapshot(&[(200, 20, &[(100, 14), (900, 6)]), (500, 1, &[(50, 1)])]),
            retention,
        );
        let d = h.delta(s(60)).unwrap();
        assert_eq!(d.elapsed, s(60));
        assert_eq!(
            counts(&d),
            [(200, 10, vec![(100, 4), (900, 6)]), (500, 1, vec![(50, 1)])]
        );
        let d = h.delta(s(30)).unwrap();
        assert_eq!(d.elapsed, s(30));
        assert_eq!(
            counts(&d),
            [(200, 5, vec![(100, 2), (900, 3)]), (500, 1, vec![(50, 1)])]
        );
        // Longer than the history: from the oldest.
        assert_eq!(h.delta(s(300)).unwrap().elapsed, s(60));
    }

    #[test]
    fn a_restarted_proxy_counts_from_its_start() {
        let t0 = Instant::now();
        let mut h = History::default();
        h.push(
            t0,
            snapshot(&[(200, 100, &[(100, 100)])]),
            Duration::from_secs(600),
        );
        h.push(
            t0 + Duration::from_secs(5),
            snapshot(&[(200, 3, &[(100, 3)])]),
            Duration::from_secs(600),
        );
        let d = h.delta(Duration::from_secs(60)).unwrap();
        assert_eq!(counts(&d), [(200, 3, vec![(100, 3)])]);
    }

    #[test]
    fn old_answers_are_forgotten_after_the_retention() {
        let t0 = Instant::now();
        let mut h = History::default();
        for i in 0..100u64 {
            h.push(
                t0 + Duration::from_secs(i),
                snapshot(&[(200, i, &[])]),
                Duration::from_secs(10),
            );
        }
        assert!(h.samples.len() <= 12, "{}", h.samples.len());
        assert_eq!(
            h.delta(Duration::from_secs(10)).unwrap().elapsed,
            Duration::from_secs(10)
        );
    }
}
