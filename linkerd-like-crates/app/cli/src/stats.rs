//! Golden metrics from a proxy's `/metrics` text.
//!
//! Latency percentiles come from the `response_latency_ms` buckets with the same linear
//! interpolation as Prometheus' `histogram_quantile`, so the table agrees with dashboards.

use std::collections::BTreeMap;

/// One metric sample: its name, labels and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The metric name.
    pub name: String,
    /// The labels, in order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the samples of the Prometheus text format; comments and malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    let (name_labels, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match name_labels.split_once('{') {
        None => (name_labels.to_string(), Vec::new()),
        Some((name, rest)) => (name.to_string(), parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

fn parse_labels(mut s: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim_start_matches(',').to_string(), value));
        s = &rest[end + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
    Some(labels)
}

/// Golden metrics of one side of one proxy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Golden {
    /// Responses counted.
    pub responses: f64,
    /// Of which classified as success.
    pub successes: f64,
    /// Of which came over mutual TLS (`tls="true"`).
    pub secured: f64,
    /// Cumulative latency buckets: upper bound (ms) -> count.
    pub buckets: Vec<(f64, f64)>,
}

impl Golden {
    /// Sums every response with `direction` in `samples`.
    pub fn from_samples(samples: &[Sample], direction: &str) -> Self {
        let mut g = Golden::default();
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for s in samples
            .iter()
            .filter(|s| s.label("direction") == Some(direction))
        {
            match s.name.as_str() {
                "response_total" => {
                    g.responses += s.value;
                    if s.label("classification") == Some("success") {
                        g.successes += s.value;
                    }
                    if s.label("tls") == Some("true") {
                        g.secured += s.value;
                    }
                }
                "response_latency_ms_bucket" => {
                    let le = match s.label("le") {
                        Some("+Inf") => f64::INFINITY,
                        Some(v) => match v.parse() {
                            Ok(v) => v,
                            Err(_) => continue,
                        },
                        None => continue,
                    };
                    buckets.entry(le.to_bits()).or_insert((le, 0.0)).1 += s.value;
                }
                _ => {}
            }
        }
        g.buckets = buckets.into_values().collect();
        g.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        g
    }

    /// Adds `other`'s counts (another proxy's, for a service with several replicas).
    pub fn add(&mut self, other: &Golden) {
        self.responses += other.responses;
        self.successes += other.successes;
        self.secured += other.secured;
        for &(le, count) in &other.buckets {
            match self.buckets.iter_mut().find(|(l, _)| *l == le) {
                Some(bucket) => bucket.1 += count,
                None => self.buckets.push((le, count)),
            }
        }
        self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Golden) -> Golden {
        let buckets = self
            .buckets
            .iter()
            .map(|&(le, c)| {
                let before = earlier
                    .buckets
                    .iter()
                    .find(|(l, _)| *l == le)
                    .map_or(0.0, |b| b.1);
                (le, c - before)
            })
            .collect();
        Golden {
            responses: self.responses - earlier.responses,
            successes: self.successes - earlier.successes,
            secured: self.secured - earlier.secured,
            buckets,
        }
    }

    /// The success rate, if anything was counted.
    pub fn success_rate(&self) -> Option<f64> {
        (self.responses > 0.0).then(|| self.successes / self.responses)
    }

    /// The share of responses that came over mutual TLS, if anything was counted.
    pub fn secured_rate(&self) -> Option<f64> {
        (self.responses > 0.0).then(|| self.secured / self.responses)
    }

    /// The `q` quantile of latency in ms, as Prometheus' `histogram_quantile` computes it.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut prev = (0.0, 0.0);
        for &(le, count) in &self.buckets {
            if count >= rank {
                if le.is_infinite() {
                    // Above the highest finite bound: report that bound, as Prometheus does.
                    return Some(prev.0);
                }
                let in_bucket = count - prev.1;
                if in_bucket <= 0.0 {
                    return Some(le);
                }
                return Some(prev.0 + (le - prev.0) * (rank - prev.1) / in_bucket);
            }
            prev = (le, count);
        }
        Some(prev.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP response_total x
# TYPE response_total counter
response_total{direction="inbound",authority="a",status_code="200",classification="success"} 90
response_total{direction="inbound",authority="a",status_code="500",classification="failure"} 10
response_total{direction="outbound",authority="b",status_code="200",classification="success"} 7
response_latency_ms_bucket{direction="inbound",status_code="200",le="1"} 0
response_latency_ms_bucket{direction="inbound",status_code="200",le="2"} 50
response_latency_ms_bucket{direction="inbound",status_code="200",le="4"} 90
response_latency_ms_bucket{direction="inbound",status_code="200",le="+Inf"} 90
response_latency_ms_bucket{direction="inbound",status_code="500",le="1"} 0
response_latency_ms_bucket{direction="inbound",status_code="500",le="2"} 0
response_latency_ms_bucket{direction="inbound",status_code="500",le="4"} 10
response_latency_ms_bucket{direction="inbound",status_code="500",le="+Inf"} 10
odd{a="quote \" and \\ slash"} 1
"#;

    #[test]
    fn parses_labels_with_escapes() {
        let samples = parse(TEXT);
        let odd = samples.iter().find(|s| s.name == "odd").unwrap();
        assert_eq!(odd.label("a"), Some(r#"quote " and \ slash"#));
    }

    #[test]
    fn golden_metrics_per_direction() {
        let g = Golden::from_samples(&parse(TEXT), "inbound");
        assert_eq!(g.responses, 100.0);
        assert_eq!(g.success_rate(), Some(0.9));
        // 50 of 100 are <= 2ms: the median is the top of that bucket.
        assert_eq!(g.quantile(0.5), Some(2.0));
        // p99: rank 99 falls in (2, 4] which holds 50: 2 + 2 * 49/50.
        assert!((g.quantile(0.99).unwrap() - 3.96).abs() < 1e-9);
        let out = Golden::from_samples(&parse(TEXT), "outbound");
        assert_eq!(out.responses, 7.0);
        assert_eq!(out.quantile(0.5), None);
    }

    #[test]
    fn deltas_between_scrapes() {
        let before = Golden::from_samples(&parse(TEXT), "inbound");
        let mut after = before.clone();
        after.responses += 10.0;
        after.successes += 5.0;
        for b in &mut after.buckets {
            if b.0 >= 4.0 {
                b.1 += 10.0;
            }
        }
        let d = after.since(&before);
        assert_eq!(d.responses, 10.0);
        assert_eq!(d.success_rate(), Some(0.5));
        assert_eq!(d.quantile(0.5), Some(3.0));
    }
}
