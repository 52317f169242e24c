use crate::prom::escape_label_value;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The labels of the endpoint a response came from (`service`, `namespace`, `workload`,
/// `pod`...), as the controller named them. A router that balances over discovered endpoints
/// puts them in the response's extensions; the response metrics then carry them as `dst_*`
/// labels, and tap completes an outbound request's destination with them.
#[derive(Clone, Debug, Eq)]
pub struct DestinationLabels(pub Arc<BTreeMap<String, String>>);

impl PartialEq for DestinationLabels {
    fn eq(&self, other: &Self) -> bool {
        // One endpoint's responses share one map: the pointer answers without a walk.
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Hash for DestinationLabels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl DestinationLabels {
    /// Writes `,dst_<key>="<value>"` for each label. Keys are made Prometheus label names:
    /// any character other than a letter, digit or `_` becomes `_`.
    pub fn encode(&self, out: &mut String) {
        for (k, v) in self.0.iter() {
            out.push_str(",dst_");
            out.extend(k.chars().map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            }));
            out.push_str("=\"");
            escape_label_value(v, out);
            out.push('"');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_label_names_and_values_are_escaped() {
        let labels = DestinationLabels(Arc::new(BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), "books".to_string()),
            ("pod".to_string(), "a\"b".to_string()),
        ])));
        let mut out = String::new();
        labels.encode(&mut out);
        assert_eq!(out, r#",dst_app_kubernetes_io_name="books",dst_pod="a\"b""#);
    }

    #[test]
    fn equal_maps_are_equal_whether_shared_or_not() {
        let map = BTreeMap::from([("pod".to_string(), "books-0".to_string())]);
        let a = DestinationLabels(Arc::new(map.clone()));
        assert_eq!(a, a.clone());
        assert_eq!(a, DestinationLabels(Arc::new(map)));
        assert_ne!(a, DestinationLabels(Arc::new(BTreeMap::new())));
    }
}
