//! The policy part of the file registry.
//!
//! ```yaml
//! servers:
//!   - name: books-http
//!     namespace: demo
//!     spec: {podSelector: {workload: books}, port: 7001, proxyProtocol: HTTP/1}
//! authorizationPolicies:
//!   - name: web-to-books
//!     namespace: demo
//!     spec:
//!       server: books-http
//!       identities: [web.demo.serviceaccount.identity.conduit.cluster.local]
//! workloadDefaults:            # per-workload default policies, by <namespace>/<workload>
//!   demo/books: all-authenticated
//! ```
//!
//! Pods are the endpoints with a `pod` label in `services`, in their service's namespace,
//! with their endpoint labels (so `workload` is one).

use crate::spec::{AuthorizationPolicySpec, ServerSpec};
use crate::{PodSpec, PolicyIndex, PolicyState};
use conduit_control_destination::file::{RegistryError, Section};
use conduit_policy::DefaultPolicy;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyFile {
    #[serde(default)]
    services: Vec<Service>,
    #[serde(default)]
    servers: Vec<Named<ServerSpec>>,
    #[serde(default)]
    authorization_policies: Vec<Named<AuthorizationPolicySpec>>,
    #[serde(default)]
    workload_defaults: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Named<T> {
    name: String,
    namespace: String,
    spec: T,
}

#[derive(Debug, Deserialize)]
struct Service {
    namespace: String,
    #[serde(default)]
    ports: Vec<Port>,
}

#[derive(Debug, Deserialize)]
struct Port {
    #[serde(default)]
    endpoints: Vec<Endpoint>,
}

#[derive(Debug, Deserialize)]
struct Endpoint {
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Parses the policy part of a registry.
pub fn parse(text: &str, path: &str) -> Result<PolicyState, RegistryError> {
    let file: PolicyFile = serde_yaml_ng::from_str(text).map_err(|e| RegistryError::Syntax {
        path: path.to_string(),
        reason: e.to_string(),
    })?;
    let invalid = |reason: String| RegistryError::Invalid {
        path: path.to_string(),
        reason,
    };
    let mut defaults = BTreeMap::new();
    for (workload, policy) in &file.workload_defaults {
        let policy: DefaultPolicy =
            policy.parse().map_err(|e: conduit_policy::InvalidPolicy| {
                invalid(format!("workloadDefaults {workload}: {}", e.0))
            })?;
        let (ns, name) = workload.split_once('/').ok_or_else(|| {
            invalid(format!(
                "workloadDefaults {workload:?}: write <namespace>/<workload>"
            ))
        })?;
        defaults.insert((ns.to_string(), name.to_string()), policy);
    }
    let mut state = PolicyState::default();
    for svc in &file.services {
        for endpoint in svc.ports.iter().flat_map(|p| &p.endpoints) {
            let Some(pod) = endpoint.labels.get("pod") else {
                continue;
            };
            let default_policy = endpoint
                .labels
                .get("workload")
                .and_then(|w| defaults.get(&(svc.namespace.clone(), w.clone())).copied());
            state.pods.insert(
                (svc.namespace.clone(), pod.clone()),
                PodSpec {
                    labels: endpoint.labels.clone(),
                    default_policy,
                },
            );
        }
    }
    for s in file.servers {
        s.spec
            .protocol()
            .map_err(|e| invalid(format!("server {}/{}: {e}", s.namespace, s.name)))?;
        if state
            .servers
            .insert((s.namespace.clone(), s.name.clone()), s.spec)
            .is_some()
        {
            return Err(invalid(format!(
                "server {}/{} is listed twice",
                s.namespace, s.name
            )));
        }
    }
    for a in file.authorization_policies {
        let id = format!("{}/{}", a.namespace, a.name);
        a.spec
            .to_api(&a.name)
            .map_err(|e| invalid(format!("authorization policy {id}: {e}")))?;
        if !state
            .servers
            .contains_key(&(a.namespace.clone(), a.spec.server.clone()))
        {
            return Err(invalid(format!(
                "authorization policy {id} names server {}, which is not listed in {}",
                a.spec.server, a.namespace
            )));
        }
        if state
            .authorizations
            .insert((a.namespace.clone(), a.name.clone()), a.spec)
            .is_some()
        {
            return Err(invalid(format!(
                "authorization policy {id} is listed twice"
            )));
        }
    }
    Ok(state)
}

/// The policy index as a section of the file registry.
#[derive(Clone, Debug)]
pub struct FileSection(pub Arc<PolicyIndex>);

impl Section for FileSection {
    fn parse(&self, text: &str, path: &str) -> Result<Box<dyn FnOnce() + Send>, RegistryError> {
        let state = parse(text, path)?;
        let index = self.0.clone();
        Ok(Box::new(move || index.replace_all(state)))
    }
}
