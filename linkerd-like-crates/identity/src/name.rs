use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The longest DNS name, and so the longest identity.
const MAX_NAME: usize = 253;
/// The longest DNS label.
const MAX_LABEL: usize = 63;
/// What sits between a workload's namespace and the control plane's in its identity.
const INFIX: &str = ".serviceaccount.identity.";

/// Why a string is not an identity name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    /// Empty, or longer than a DNS name may be.
    #[error("an identity is 1 to {MAX_NAME} characters, not {0}")]
    Length(usize),
    /// A label is empty or longer than 63 characters.
    #[error("label {0:?} must be 1 to {MAX_LABEL} characters")]
    Label(String),
    /// A character outside lowercase letters, digits, `-` and `.`.
    #[error("label {0:?} may hold only lowercase letters, digits and '-', not starting or ending with '-'")]
    Character(String),
}

/// A validated identity name: a lowercase DNS name, the DNS SAN of a workload's certificate
/// and the TLS server name its proxy answers to.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(Arc<str>);

impl Name {
    /// Checks `s` is a DNS-like name: dot-separated labels of `[a-z0-9-]`, none empty, none
    /// starting or ending with `-`, at most 253 characters in all.
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        if s.is_empty() || s.len() > MAX_NAME {
            return Err(InvalidName::Length(s.len()));
        }
        for label in s.split('.') {
            if label.is_empty() || label.len() > MAX_LABEL {
                return Err(InvalidName::Label(label.into()));
            }
            let ok = label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok || label.starts_with('-') || label.ends_with('-') {
                return Err(InvalidName::Character(label.into()));
            }
        }
        Ok(Self(s.into()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The name's text, shared rather than copied: labels and extensions take it per request.
impl From<Name> for Arc<str> {
    fn from(name: Name) -> Self {
        name.0
    }
}

impl FromStr for Name {
    type Err = InvalidName;
    fn from_str(s: &str) -> Result<Self, InvalidName> {
        Self::parse(s)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A workload as Kubernetes knows it: the service account it runs as, in a namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Workload {
    /// The service account (a DNS subdomain: it may hold dots).
    pub service_account: String,
    /// The namespace (one DNS label).
    pub namespace: String,
}

/// The mesh's naming: which control plane and trust domain identities belong to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    /// The control plane's namespace (`conduit`).
    pub control_namespace: String,
    /// The trust domain (`cluster.local`).
    pub trust_domain: String,
}

impl Default for Domain {
    fn default() -> Self {
        Self {
            control_namespace: "conduit".into(),
            trust_domain: "cluster.local".into(),
        }
    }
}

impl Domain {
    /// `<sa>.<ns>.serviceaccount.identity.<control-ns>.<trust-domain>`.
    pub fn name(&self, workload: &Workload) -> Result<Name, InvalidName> {
        Name::parse(&format!(
            "{}.{}{INFIX}{}.{}",
            workload.service_account, workload.namespace, self.control_namespace, self.trust_domain
        ))
    }

    /// The workload `name` identifies, if it is a workload identity of this domain. The
    /// namespace is the label before `.serviceaccount.`, and everything before it is the
    /// service account, which may itself hold dots.
    pub fn workload(&self, name: &Name) -> Option<Workload> {
        let suffix = format!("{INFIX}{}.{}", self.control_namespace, self.trust_domain);
        let head = name.as_str().strip_suffix(&suffix)?;
        let (sa, ns) = head.rsplit_once('.')?;
        Some(Workload {
            service_account: sa.into(),
            namespace: ns.into(),
        })
    }

    /// The workload's SPIFFE ID: `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`.
    pub fn spiffe_id(&self, workload: &Workload) -> String {
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, workload.namespace, workload.service_account
        )
    }

    /// The identity names of this domain all end with this (`.serviceaccount.identity.<cns>.<td>`).
    pub fn suffix(&self) -> String {
        format!("{INFIX}{}.{}", self.control_namespace, self.trust_domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> Workload {
        Workload {
            service_account: "web".into(),
            namespace: "demo".into(),
        }
    }

    #[test]
    fn names_round_trip_through_workloads() {
        let d = Domain::default();
        let name = d.name(&web()).unwrap();
        assert_eq!(
            name.as_str(),
            "web.demo.serviceaccount.identity.conduit.cluster.local"
        );
        assert_eq!(d.workload(&name), Some(web()));
        assert_eq!(d.spiffe_id(&web()), "spiffe://cluster.local/ns/demo/sa/web");

        let dotted = Workload {
            service_account: "a.b".into(),
            namespace: "prod".into(),
        };
        assert_eq!(d.workload(&d.name(&dotted).unwrap()), Some(dotted));
    }

    #[test]
    fn names_of_other_domains_are_not_workloads() {
        let d = Domain::default();
        let other = Domain {
            control_namespace: "linkerd".into(),
            trust_domain: "cluster.local".into(),
        };
        assert_eq!(d.workload(&other.name(&web()).unwrap()), None);
        assert_eq!(d.workload(&Name::parse("example.com").unwrap()), None);
        let no_ns = Name::parse("serviceaccount.identity.conduit.cluster.local").unwrap();
        assert_eq!(d.workload(&no_ns), None);
    }

    #[test]
    fn bad_names_say_why() {
        assert_eq!(Name::parse(""), Err(InvalidName::Length(0)));
        assert!(matches!(
            Name::parse(&"a".repeat(254)),
            Err(InvalidName::Length(254))
        ));
        assert!(matches!(Name::parse("a..b"), Err(InvalidName::Label(_))));
        assert!(matches!(
            Name::parse(&format!("{}.b", "a".repeat(64))),
            Err(InvalidName::Label(_))
        ));
        assert!(matches!(
            Name::parse("Web.demo"),
            Err(InvalidName::Character(_))
        ));
        assert!(matches!(
            Name::parse("-web.demo"),
            Err(InvalidName::Character(_))
        ));
        assert!(matches!(
            Name::parse("web_1.demo"),
            Err(InvalidName::Character(_))
        ));
        assert!(matches!(
            Name::parse("web.demo."),
            Err(InvalidName::Label(_))
        ));
    }
}
