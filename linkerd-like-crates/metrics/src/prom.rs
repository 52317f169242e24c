use crate::{Counter, Family, Gauge, Histogram, LATENCY_BOUNDS_MS};
use std::fmt::Write;

/// Writes a label set as `name="value",...` (no braces).
pub trait EncodeLabels {
    /// Appends the labels to `out`.
    fn encode_labels(&self, out: &mut String);
}

/// Escapes a label value per the Prometheus text format: backslash, quote and newline.
pub fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Builds Prometheus text exposition output, one family at a time.
#[derive(Debug, Default)]
pub struct Encoder {
    out: String,
}

impl Encoder {
    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, extra: Option<(&str, &str)>, value: &str) {
        self.out.push_str(name);
        if !labels.is_empty() || extra.is_some() {
            self.out.push('{');
            self.out.push_str(labels);
            if let Some((k, v)) = extra {
                if !labels.is_empty() {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{v}\"");
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(value);
        self.out.push('\n');
    }

    fn sorted<L: EncodeLabels, M>(family: Vec<(L, M)>) -> Vec<(String, M)> {
        let mut rows: Vec<(String, M)> = family
            .into_iter()
            .map(|(l, m)| {
                let mut s = String::new();
                l.encode_labels(&mut s);
                (s, m)
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    }

    /// Writes a counter family; `name` ends in `_total`.
    pub fn counters<L, M>(
        &mut self,
        name: &str,
        help: &str,
        family: &Family<L, M>,
        get: impl Fn(&M) -> &Counter,
    ) where
        L: EncodeLabels + std::hash::Hash + Eq + Clone,
        M: Default,
    {
        self.header(name, help, "counter");
        for (labels, m) in Self::sorted(family.snapshot()) {
            self.sample(name, &labels, None, &get(&m).get().to_string());
        }
    }

    /// Writes a gauge family.
    pub fn gauges<L, M>(
        &mut self,
        name: &str,
        help: &str,
        family: &Family<L, M>,
        get: impl Fn(&M) -> &Gauge,
    ) where
        L: EncodeLabels + std::hash::Hash + Eq + Clone,
        M: Default,
    {
        self.header(name, help, "gauge");
        for (labels, m) in Self::sorted(family.snapshot()) {
            self.sample(name, &labels, None, &get(&m).get().to_string());
        }
    }

    /// Writes a histogram family.
    pub fn histograms<L, M>(
        &mut self,
        name: &str,
        help: &str,
        family: &Family<L, M>,
        get: impl Fn(&M) -> &Histogram,
    ) where
        L: EncodeLabels + std::hash::Hash + Eq + Clone,
        M: Default,
    {
        self.header(name, help, "histogram");
        let bucket = format!("{name}_bucket");
        for (labels, m) in Self::sorted(family.snapshot()) {
            let h = get(&m);
            let counts = h.cumulative();
            for (i, count) in counts.iter().enumerate() {
                let le = LATENCY_BOUNDS_MS
                    .get(i)
                    .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
                self.sample(&bucket, &labels, Some(("le", &le)), &count.to_string());
            }
            let total = counts[counts.len() - 1];
            self.sample(
                &format!("{name}_sum"),
                &labels,
                None,
                &h.sum_ms().to_string(),
            );
            self.sample(&format!("{name}_count"), &labels, None, &total.to_string());
        }
    }

    /// Writes a single unlabelled gauge.
    pub fn gauge_value(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, help, "gauge");
        self.sample(name, "", None, &value.to_string());
    }

    /// The text written so far.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Hash, PartialEq, Eq)]
    struct L(&'static str);

    impl EncodeLabels for L {
        fn encode_labels(&self, out: &mut String) {
            out.push_str("path=\"");
            escape_label_value(self.0, out);
            out.push('"');
        }
    }

    #[test]
    fn counters_are_sorted_and_escaped() {
        let f: Family<L, Counter> = Family::default();
        f.get_or_create(&L("b\"\\\n")).add(2);
        f.get_or_create(&L("a")).incr();
        let mut enc = Encoder::default();
        enc.counters("x_total", "Xs.", &f, |c| c);
        assert_eq!(
            enc.finish(),
            "# HELP x_total Xs.\n# TYPE x_total counter\n\
             x_total{path=\"a\"} 1\nx_total{path=\"b\\\"\\\\\\n\"} 2\n"
        );
    }

    #[test]
    fn histograms_have_buckets_sum_and_count() {
        let f: Family<L, Histogram> = Family::default();
        f.get_or_create(&L("a"))
            .record(std::time::Duration::from_micros(1500));
        let mut enc = Encoder::default();
        enc.histograms("lat_ms", "Latency.", &f, |h| h);
        let text = enc.finish();
        assert!(text.contains("lat_ms_bucket{path=\"a\",le=\"1\"} 0\n"));
        assert!(text.contains("lat_ms_bucket{path=\"a\",le=\"2\"} 1\n"));
        assert!(text.contains("lat_ms_bucket{path=\"a\",le=\"+Inf\"} 1\n"));
        assert!(text.contains("lat_ms_sum{path=\"a\"} 1.5\n"));
        assert!(text.contains("lat_ms_count{path=\"a\"} 1\n"));
    }
}
