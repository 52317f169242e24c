//! The resources, as written in the file registry and the `policy.conduit.io` CRDs.

use conduit_api::policy as api;
use conduit_policy::{parse_net, parse_suffix};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A Server: some pods' port, what it speaks, and (through AuthorizationPolicies naming it)
/// who may call it. A port no Server selects gets the pod's default policy.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "crd",
    derive(kube::CustomResource),
    kube(
        group = "policy.conduit.io",
        version = "v1alpha1",
        kind = "Server",
        namespaced,
        shortname = "srv"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerSpec {
    /// The pods it covers: those whose labels include all of these.
    #[serde(default)]
    pub pod_selector: BTreeMap<String, String>,
    /// The container port.
    pub port: u16,
    /// `unknown` (detect, the default), `HTTP/1`, `HTTP/2`, `gRPC` or `opaque`.
    #[serde(default)]
    pub proxy_protocol: Option<String>,
}

/// An AuthorizationPolicy: who may call a Server.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "crd",
    derive(kube::CustomResource),
    kube(
        group = "policy.conduit.io",
        version = "v1alpha1",
        kind = "AuthorizationPolicy",
        namespaced,
        shortname = "authzpolicy"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicySpec {
    /// The Server (same namespace) it opens.
    pub server: String,
    /// mTLS identities allowed: exact names, `*.<suffix>` patterns, or `*` for any.
    #[serde(default)]
    pub identities: Vec<String>,
    /// Client networks allowed (CIDRs or addresses); empty means any.
    #[serde(default)]
    pub networks: Vec<NetworkSpec>,
    /// Allow clients without mTLS (within `networks`). Exclusive with `identities`.
    #[serde(default)]
    pub unauthenticated: bool,
}

/// A network, with exceptions.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSpec {
    /// `10.0.0.0/8`, `fd00::/8` or an address.
    pub cidr: String,
    /// Sub-networks excluded.
    #[serde(default)]
    pub except: Vec<String>,
}

impl ServerSpec {
    /// The wire protocol, or why the field is wrong.
    pub fn protocol(&self) -> Result<api::ProxyProtocol, String> {
        Ok(match self.proxy_protocol.as_deref().unwrap_or("unknown") {
            "unknown" => api::ProxyProtocol::Detect,
            "HTTP/1" => api::ProxyProtocol::Http1,
            "HTTP/2" => api::ProxyProtocol::Http2,
            "gRPC" => api::ProxyProtocol::Grpc,
            "opaque" => api::ProxyProtocol::Opaque,
            other => {
                return Err(format!(
                    "proxyProtocol {other:?} must be unknown, HTTP/1, HTTP/2, gRPC or opaque"
                ))
            }
        })
    }

    /// Whether it covers a pod with `labels` on `port`.
    pub fn selects(&self, labels: &BTreeMap<String, String>, port: u16) -> bool {
        self.port == port
            && self
                .pod_selector
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
    }
}

impl AuthorizationPolicySpec {
    /// The wire form, named `name`, or why the spec is wrong.
    pub fn to_api(&self, name: &str) -> Result<api::Authorization, String> {
        let networks = self
            .networks
            .iter()
            .map(|n| {
                parse_net(&n.cidr).map_err(|e| e.0)?;
                for e in &n.except {
                    parse_net(e).map_err(|e| e.0)?;
                }
                Ok(api::Network {
                    cidr: n.cidr.clone(),
                    except: n.except.clone(),
                })
            })
            .collect::<Result<_, String>>()?;
        let authentication = match (self.unauthenticated, self.identities.is_empty()) {
            (true, true) => {
                api::authorization::Authentication::Unauthenticated(api::Unauthenticated {})
            }
            (true, false) => return Err("unauthenticated and identities exclude each other".into()),
            (false, true) => {
                return Err("list identities (or `*` for any), or set unauthenticated".into())
            }
            (false, false) => {
                let (mut identities, mut suffixes) = (Vec::new(), Vec::new());
                for id in &self.identities {
                    if id.starts_with('*') {
                        parse_suffix(id).map_err(|e| e.0)?;
                        suffixes.push(id.clone());
                    } else {
                        conduit_identity::Name::parse(id)
                            .map_err(|e| format!("identity {id:?}: {e}"))?;
                        identities.push(id.clone());
                    }
                }
                api::authorization::Authentication::MeshTls(api::MeshTls {
                    identities,
                    suffixes,
                })
            }
        };
        Ok(api::Authorization {
            name: name.into(),
            networks,
            authentication: Some(authentication),
        })
    }
}
