use foldhash::fast::RandomState;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, PoisonError, RwLock};

/// One metric per label set, created on first use.
#[derive(Debug)]
pub struct Family<L, M> {
    // foldhash: several times faster than SipHash on the per-request lookup, and still seeded
    // per process, so label values taken from requests cannot be chosen to collide.
    metrics: RwLock<HashMap<L, Arc<M>, RandomState>>,
}

impl<L, M> Default for Family<L, M> {
    fn default() -> Self {
        Self {
            metrics: RwLock::new(HashMap::default()),
        }
    }
}

impl<L: Hash + Eq + Clone, M: Default> Family<L, M> {
    /// The metric for `labels`, created if new.
    pub fn get_or_create(&self, labels: &L) -> Arc<M> {
        if let Some(m) = self
            .metrics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(labels)
        {
            return m.clone();
        }
        self.metrics
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(labels.clone())
            .or_default()
            .clone()
    }

    /// The metric for `labels`, created if new and the family holds fewer than `max` label
    /// sets; `None` when it is full. Callers then record under a coarser label set, so that
    /// label values taken from requests (an authority, say) cannot grow memory without bound.
    pub fn get_or_create_within(&self, labels: &L, max: usize) -> Option<Arc<M>> {
        if let Some(m) = self
            .metrics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(labels)
        {
            return Some(m.clone());
        }
        let mut metrics = self.metrics.write().unwrap_or_else(PoisonError::into_inner);
        if metrics.len() >= max && !metrics.contains_key(labels) {
            return None;
        }
        Some(metrics.entry(labels.clone()).or_default().clone())
    }

    /// The number of label sets.
    pub fn len(&self) -> usize {
        self.metrics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when no label set has been recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of every label set and its metric.
    pub fn snapshot(&self) -> Vec<(L, Arc<M>)> {
        self.metrics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(l, m)| (l.clone(), m.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Counter;

    #[test]
    fn one_metric_per_label_set() {
        let f: Family<&'static str, Counter> = Family::default();
        f.get_or_create(&"a").incr();
        f.get_or_create(&"a").incr();
        f.get_or_create(&"b").incr();
        let mut snap: Vec<_> = f
            .snapshot()
            .into_iter()
            .map(|(l, c)| (l, c.get()))
            .collect();
        snap.sort();
        assert_eq!(snap, vec![("a", 2), ("b", 1)]);
    }

    #[test]
    fn a_bounded_family_refuses_new_label_sets_when_full() {
        let f: Family<u32, Counter> = Family::default();
        assert!(f.get_or_create_within(&1, 2).is_some());
        assert!(f.get_or_create_within(&2, 2).is_some());
        assert!(f.get_or_create_within(&3, 2).is_none());
        assert!(
            f.get_or_create_within(&1, 2).is_some(),
            "known sets still count"
        );
        assert_eq!(f.len(), 2);
    }
}
