//! Resources as users name them (`deploy/web`, `svc/books`, `ns/demo`), and which labels
//! say a proxy or an endpoint belongs to one.

use conduit_api::tap as api;
use std::collections::BTreeMap;

/// Labels of a proxy or an endpoint (`namespace`, `workload`, `pod`, `service`).
pub type Labels = BTreeMap<String, String>;

/// A kind of resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A workload (`deployment`, `deploy`): the `workload` label.
    Deployment,
    /// A pod: the `pod` label.
    Pod,
    /// A service: the `service` label.
    Service,
    /// A namespace: the `namespace` label.
    Namespace,
    /// Everything.
    All,
}

impl Kind {
    /// Parses a kind as `kubectl` would take it: `deployment`, `deploy`, `deployments`...
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "deployment" | "deployments" | "deploy" | "workload" | "workloads" => Kind::Deployment,
            "pod" | "pods" | "po" => Kind::Pod,
            "service" | "services" | "svc" => Kind::Service,
            "namespace" | "namespaces" | "ns" => Kind::Namespace,
            "all" => Kind::All,
            _ => return None,
        })
    }

    /// The canonical name (`deployment`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deployment => "deployment",
            Kind::Pod => "pod",
            Kind::Service => "service",
            Kind::Namespace => "namespace",
            Kind::All => "all",
        }
    }

    /// The label that names a resource of this kind.
    pub fn label(self) -> Option<&'static str> {
        match self {
            Kind::Deployment => Some("workload"),
            Kind::Pod => Some("pod"),
            Kind::Service => Some("service"),
            Kind::Namespace => Some("namespace"),
            Kind::All => None,
        }
    }
}

/// A resource, or every resource of a kind: `name` and `namespace` narrow it when given.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resource {
    /// The kind.
    pub kind: Kind,
    /// The namespace; `None` is every namespace.
    pub namespace: Option<String>,
    /// The name; `None` is every resource of the kind.
    pub name: Option<String>,
}

/// A resource that cannot be understood.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidResource(String);

impl Resource {
    /// Reads a resource from the API; `what` names the field in errors.
    pub fn from_api(r: &api::Resource, what: &str) -> Result<Self, InvalidResource> {
        let kind = Kind::parse(&r.kind).ok_or_else(|| {
            InvalidResource(format!(
                "{what}: unknown kind {:?}: use deployment, pod, service, namespace or all",
                r.kind
            ))
        })?;
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let mut resource = Resource {
            kind,
            namespace: nonempty(&r.namespace),
            name: nonempty(&r.name),
        };
        // `ns/demo` names the namespace itself.
        if kind == Kind::Namespace && resource.name.is_some() {
            resource.namespace = resource.name.clone();
        }
        if kind == Kind::All && resource.name.is_some() {
            return Err(InvalidResource(format!("{what}: kind all takes no name")));
        }
        Ok(resource)
    }

    /// Whether `labels` belong to this resource.
    pub fn matches(&self, labels: &Labels) -> bool {
        let has = |k: &str, v: &Option<String>| match v {
            None => true,
            Some(v) => labels.get(k) == Some(v),
        };
        if !has("namespace", &self.namespace) {
            return false;
        }
        match self.kind.label() {
            None => true,
            Some(key) => labels.contains_key(key) && has(key, &self.name),
        }
    }

    /// The resource of `kind` that `labels` belong to: its namespace and name.
    pub fn of(kind: Kind, labels: &Labels) -> Option<(String, String)> {
        let ns = labels.get("namespace").cloned().unwrap_or_default();
        let name = labels.get(kind.label()?)?.clone();
        Some((ns, name))
    }

    /// As the API's resource.
    pub fn to_api(kind: Kind, namespace: &str, name: &str) -> api::Resource {
        api::Resource {
            namespace: namespace.to_string(),
            kind: kind.as_str().to_string(),
            name: name.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn res(ns: &str, kind: &str, name: &str) -> Resource {
        Resource::from_api(
            &api::Resource {
                namespace: ns.into(),
                kind: kind.into(),
                name: name.into(),
            },
            "target",
        )
        .unwrap()
    }

    #[test]
    fn resources_match_by_their_kind_label_and_namespace() {
        let web = labels(&[("namespace", "demo"), ("workload", "web"), ("pod", "web-0")]);
        assert!(res("demo", "deploy", "web").matches(&web));
        assert!(res("", "deployment", "web").matches(&web));
        assert!(res("demo", "deploy", "").matches(&web));
        assert!(!res("demo", "deploy", "books").matches(&web));
        assert!(!res("other", "deploy", "web").matches(&web));
        assert!(res("", "po", "web-0").matches(&web));
        assert!(res("", "ns", "demo").matches(&web));
        assert!(!res("", "ns", "other").matches(&web));
        assert!(res("", "all", "").matches(&web));
        // A service's label is not on a proxy's own labels.
        assert!(!res("demo", "svc", "").matches(&web));
        assert_eq!(
            Resource::of(Kind::Deployment, &web),
            Some(("demo".into(), "web".into()))
        );
        assert_eq!(Resource::of(Kind::Service, &web), None);
    }

    #[test]
    fn bad_resources_say_why() {
        let err = Resource::from_api(
            &api::Resource {
                namespace: String::new(),
                kind: "replicaset".into(),
                name: String::new(),
            },
            "to",
        )
        .unwrap_err();
        assert!(err
            .to_string()
            .starts_with("to: unknown kind \"replicaset\""));
    }
}
