use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, PoisonError, RwLock};

/// One metric per label set, created on first use.
#[derive(Debug)]
pub struct Family<L, M> {
    metrics: RwLock<HashMap<L, Arc<M>>>,
}

impl<L, M> Default for Family<L, M> {
    fn default() -> Self {
        Self {
            metrics: RwLock::new(HashMap::new()),
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
}
