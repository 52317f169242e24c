//! Inbound authorization.
//!
//! Each inbound port of a workload has a [`ServerPolicy`]: the protocol to expect (so
//! detection can be skipped) and a list of [`Authorization`]s. A connection, or each request
//! on it, is allowed when any authorization matches the [`Client`]:
//!
//! - its networks (if any) contain the client's address, minus their exceptions;
//! - and its authentication is met: [`Authn::Unauthenticated`] lets anyone in;
//!   [`Authn::MeshTls`] wants mTLS with an identity that is listed exactly or matches a
//!   `*.<suffix>` pattern (`*` alone: any identity).
//!
//! No match is a [`Denied`] that says why. Ports no Server describes get the workload's
//! [`DefaultPolicy`]: `all-unauthenticated`, `all-authenticated`, `cluster-unauthenticated`,
//! `cluster-authenticated` (clients in the cluster's networks) or `deny`.
//!
//! [`ServerPolicy::from_api`] reads the controller's `InboundServer` (`proto/policy.proto`),
//! refusing a malformed one with a reason rather than guessing.

#![forbid(unsafe_code)]

use conduit_api::policy as api;
use conduit_identity::Name;
use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

/// What a port speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Detect from the first bytes.
    Detect,
    /// HTTP/1.
    Http1,
    /// HTTP/2.
    Http2,
    /// gRPC (HTTP/2).
    Grpc,
    /// Opaque TCP: no detection.
    Opaque,
}

/// Who is connecting.
#[derive(Clone, Copy, Debug)]
pub struct Client<'a> {
    /// The client's address.
    pub addr: IpAddr,
    /// Its identity, when it came over mTLS with a certificate.
    pub identity: Option<&'a Name>,
}

/// A network, with exceptions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    /// The network.
    pub net: IpNet,
    /// Sub-networks excluded.
    pub except: Vec<IpNet>,
}

impl Network {
    fn contains(&self, addr: &IpAddr) -> bool {
        self.net.contains(addr) && !self.except.iter().any(|e| e.contains(addr))
    }
}

/// How a client must authenticate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authn {
    /// Not at all.
    Unauthenticated,
    /// With mTLS, as one of these identities.
    MeshTls {
        /// Exact names.
        identities: Vec<Name>,
        /// Suffixes, each starting with `.` (from `*.<suffix>`); an empty suffix (from `*`)
        /// matches any identity.
        suffixes: Vec<String>,
    },
}

/// One way in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    /// What grants it.
    pub name: Arc<str>,
    /// Client networks allowed; empty for any.
    pub networks: Vec<Network>,
    /// Authentication wanted.
    pub authn: Authn,
}

impl Authorization {
    fn allows(&self, client: &Client<'_>) -> bool {
        let in_network =
            self.networks.is_empty() || self.networks.iter().any(|n| n.contains(&client.addr));
        in_network
            && match &self.authn {
                Authn::Unauthenticated => true,
                Authn::MeshTls {
                    identities,
                    suffixes,
                } => client.identity.is_some_and(|id| {
                    identities.contains(id)
                        || suffixes
                            .iter()
                            .any(|s| s.is_empty() || id.as_str().ends_with(s.as_str()))
                }),
            }
    }
}

/// The policy of one inbound port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerPolicy {
    /// The Server it comes from, or `default:<policy>`.
    pub name: Arc<str>,
    /// What the port speaks.
    pub protocol: Protocol,
    /// The ways in.
    pub authorizations: Vec<Authorization>,
}

/// A refused connection or request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unauthorized: {client} is not allowed by server {server} ({reason})")]
pub struct Denied {
    /// The server whose policy refused.
    pub server: Arc<str>,
    /// The client, as the message shows it (`10.0.0.1` or `10.0.0.1 (web.demo...)`).
    pub client: String,
    /// Why.
    pub reason: DenyReason,
}

/// Why a client was refused, as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// The port allows only mTLS clients, and this one has no identity.
    NoIdentity,
    /// The client's identity is not among those allowed.
    Identity,
    /// The client's address is outside every allowed network.
    Network,
    /// The port allows no one.
    NoAuthorizations,
}

impl DenyReason {
    /// The label value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NoIdentity => "no_identity",
            Self::Identity => "identity",
            Self::Network => "network",
            Self::NoAuthorizations => "no_authorizations",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoIdentity => "mTLS required",
            Self::Identity => "identity not authorized",
            Self::Network => "network not authorized",
            Self::NoAuthorizations => "no authorizations",
        })
    }
}

impl ServerPolicy {
    /// The authorization that lets `client` in, or why none does.
    pub fn authorize(&self, client: &Client<'_>) -> Result<&Authorization, Denied> {
        self.authorizations
            .iter()
            .find(|a| a.allows(client))
            .ok_or_else(|| Denied {
                server: self.name.clone(),
                client: match client.identity {
                    Some(id) => format!("{} ({id})", client.addr),
                    None => format!("{} (no mTLS identity)", client.addr),
                },
                reason: self.deny_reason(client),
            })
    }

    /// The most useful reason no authorization matched: what the client would have to
    /// change.
    fn deny_reason(&self, client: &Client<'_>) -> DenyReason {
        if self.authorizations.is_empty() {
            return DenyReason::NoAuthorizations;
        }
        let reachable = self.authorizations.iter().filter(|a| {
            a.networks.is_empty() || a.networks.iter().any(|n| n.contains(&client.addr))
        });
        let mut any = false;
        for a in reachable {
            any = true;
            if matches!(a.authn, Authn::Unauthenticated) {
                // Unreachable: it would have matched.
                return DenyReason::Network;
            }
        }
        match (any, client.identity) {
            (false, _) => DenyReason::Network,
            (true, None) => DenyReason::NoIdentity,
            (true, Some(_)) => DenyReason::Identity,
        }
    }

    /// Reads the controller's description of a port.
    pub fn from_api(server: &api::InboundServer) -> Result<Self, InvalidPolicy> {
        let protocol = match api::ProxyProtocol::try_from(server.protocol) {
            Ok(api::ProxyProtocol::Detect) => Protocol::Detect,
            Ok(api::ProxyProtocol::Http1) => Protocol::Http1,
            Ok(api::ProxyProtocol::Http2) => Protocol::Http2,
            Ok(api::ProxyProtocol::Grpc) => Protocol::Grpc,
            Ok(api::ProxyProtocol::Opaque) => Protocol::Opaque,
            Err(_) => {
                return Err(InvalidPolicy(format!(
                    "unknown protocol {}",
                    server.protocol
                )))
            }
        };
        let authorizations = server
            .authorizations
            .iter()
            .map(authorization_from_api)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name: server.name.as_str().into(),
            protocol,
            authorizations,
        })
    }
}

fn authorization_from_api(a: &api::Authorization) -> Result<Authorization, InvalidPolicy> {
    let networks = a
        .networks
        .iter()
        .map(|n| {
            Ok(Network {
                net: parse_net(&n.cidr)?,
                except: n
                    .except
                    .iter()
                    .map(|e| parse_net(e))
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect::<Result<_, InvalidPolicy>>()?;
    let authn = match &a.authentication {
        Some(api::authorization::Authentication::Unauthenticated(_)) => Authn::Unauthenticated,
        Some(api::authorization::Authentication::MeshTls(tls)) => Authn::MeshTls {
            identities: tls
                .identities
                .iter()
                .map(|i| Name::parse(i).map_err(|e| InvalidPolicy(format!("identity {i:?}: {e}"))))
                .collect::<Result<_, _>>()?,
            suffixes: tls
                .suffixes
                .iter()
                .map(|s| parse_suffix(s))
                .collect::<Result<_, _>>()?,
        },
        None => {
            return Err(InvalidPolicy(format!(
                "authorization {} says nothing of authentication",
                a.name
            )))
        }
    };
    Ok(Authorization {
        name: a.name.as_str().into(),
        networks,
        authn,
    })
}

/// `*.<suffix>` as `.<suffix>`, `*` as the empty suffix.
pub fn parse_suffix(s: &str) -> Result<String, InvalidPolicy> {
    match s {
        "*" => Ok(String::new()),
        _ => match s.strip_prefix("*.") {
            Some(rest) if Name::parse(rest).is_ok() => Ok(format!(".{rest}")),
            _ => Err(InvalidPolicy(format!(
                "identity pattern {s:?} must be `*` or `*.<name>`"
            ))),
        },
    }
}

/// A CIDR, or a bare address as a single-host network.
pub fn parse_net(s: &str) -> Result<IpNet, InvalidPolicy> {
    let s = s.trim();
    IpNet::from_str(s)
        .or_else(|_| IpAddr::from_str(s).map(IpNet::from))
        .map_err(|_| InvalidPolicy(format!("{s:?} is not a network (10.0.0.0/8) or address")))
}

/// A policy the proxy cannot use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid policy: {0}")]
pub struct InvalidPolicy(pub String);

/// What a port no Server describes allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultPolicy {
    /// Anyone.
    AllUnauthenticated,
    /// Any mTLS client.
    AllAuthenticated,
    /// Anyone in the cluster's networks.
    ClusterUnauthenticated,
    /// Any mTLS client in the cluster's networks.
    ClusterAuthenticated,
    /// No one.
    Deny,
}

impl DefaultPolicy {
    /// The names, as written in configuration.
    pub const NAMES: &'static str = "all-unauthenticated, all-authenticated, cluster-unauthenticated, cluster-authenticated or deny";

    /// The configuration name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::AllUnauthenticated => "all-unauthenticated",
            Self::AllAuthenticated => "all-authenticated",
            Self::ClusterUnauthenticated => "cluster-unauthenticated",
            Self::ClusterAuthenticated => "cluster-authenticated",
            Self::Deny => "deny",
        }
    }

    /// The policy it stands for, with `cluster` as the cluster's networks, in the wire form
    /// the controller sends (a proxy without a controller reads it back with
    /// [`DefaultPolicy::policy`], so both mean the same).
    pub fn to_api(&self, cluster: &[IpNet]) -> api::InboundServer {
        let name = format!("default:{}", self.as_str());
        let cluster_nets = || {
            cluster
                .iter()
                .map(|c| api::Network {
                    cidr: c.to_string(),
                    except: Vec::new(),
                })
                .collect()
        };
        let any_identity = || {
            api::authorization::Authentication::MeshTls(api::MeshTls {
                identities: Vec::new(),
                suffixes: vec!["*".into()],
            })
        };
        let anyone =
            || api::authorization::Authentication::Unauthenticated(api::Unauthenticated {});
        let authz = |networks, authentication| api::Authorization {
            name: name.clone(),
            networks,
            authentication: Some(authentication),
        };
        let authorizations = match self {
            Self::AllUnauthenticated => vec![authz(Vec::new(), anyone())],
            Self::AllAuthenticated => vec![authz(Vec::new(), any_identity())],
            Self::ClusterUnauthenticated => vec![authz(cluster_nets(), anyone())],
            Self::ClusterAuthenticated => vec![authz(cluster_nets(), any_identity())],
            Self::Deny => Vec::new(),
        };
        api::InboundServer {
            name,
            protocol: api::ProxyProtocol::Detect as i32,
            authorizations,
        }
    }

    /// The policy it stands for, with `cluster` as the cluster's networks.
    pub fn policy(&self, cluster: &[IpNet]) -> ServerPolicy {
        // Built from well-formed parts, so it always reads back; were it not to, deny.
        ServerPolicy::from_api(&self.to_api(cluster)).unwrap_or_else(|_| ServerPolicy {
            name: format!("default:{}", self.as_str()).into(),
            protocol: Protocol::Detect,
            authorizations: Vec::new(),
        })
    }
}

impl FromStr for DefaultPolicy {
    type Err = InvalidPolicy;
    fn from_str(s: &str) -> Result<Self, InvalidPolicy> {
        Ok(match s.trim() {
            "all-unauthenticated" => Self::AllUnauthenticated,
            "all-authenticated" => Self::AllAuthenticated,
            "cluster-unauthenticated" => Self::ClusterUnauthenticated,
            "cluster-authenticated" => Self::ClusterAuthenticated,
            "deny" => Self::Deny,
            other => {
                return Err(InvalidPolicy(format!(
                    "{other:?} is not a default policy: use {}",
                    Self::NAMES
                )))
            }
        })
    }
}

impl fmt::Display for DefaultPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(sa: &str, ns: &str) -> Name {
        Name::parse(&format!(
            "{sa}.{ns}.serviceaccount.identity.conduit.cluster.local"
        ))
        .unwrap()
    }

    fn client<'a>(addr: &str, id: Option<&'a Name>) -> Client<'a> {
        Client {
            addr: addr.parse().unwrap(),
            identity: id,
        }
    }

    fn server(authorizations: Vec<Authorization>) -> ServerPolicy {
        ServerPolicy {
            name: "books-http".into(),
            protocol: Protocol::Http1,
            authorizations,
        }
    }

    #[test]
    fn identities_match_exactly_or_by_suffix() {
        let policy = server(vec![Authorization {
            name: "web-and-prod".into(),
            networks: vec![],
            authn: Authn::MeshTls {
                identities: vec![name("web", "demo")],
                suffixes: vec![parse_suffix(
                    "*.prod.serviceaccount.identity.conduit.cluster.local",
                )
                .unwrap()],
            },
        }]);
        let (web, api, other) = (
            name("web", "demo"),
            name("api", "prod"),
            name("books", "demo"),
        );
        assert!(policy.authorize(&client("10.0.0.1", Some(&web))).is_ok());
        assert!(policy.authorize(&client("10.0.0.1", Some(&api))).is_ok());
        let denied = policy
            .authorize(&client("10.0.0.1", Some(&other)))
            .unwrap_err();
        assert_eq!(
            denied.to_string(),
            "unauthorized: 10.0.0.1 (books.demo.serviceaccount.identity.conduit.cluster.local) is not allowed by server books-http (identity not authorized)"
        );
        let plain = policy.authorize(&client("10.0.0.1", None)).unwrap_err();
        assert_eq!(plain.reason, DenyReason::NoIdentity);
    }

    #[test]
    fn networks_and_their_exceptions_bound_any_authentication() {
        let policy = server(vec![Authorization {
            name: "monitoring".into(),
            networks: vec![Network {
                net: parse_net("10.0.0.0/8").unwrap(),
                except: vec![parse_net("10.9.0.0/16").unwrap()],
            }],
            authn: Authn::Unauthenticated,
        }]);
        assert!(policy.authorize(&client("10.1.2.3", None)).is_ok());
        let err = policy.authorize(&client("10.9.2.3", None)).unwrap_err();
        assert_eq!(err.reason, DenyReason::Network);
        assert!(policy.authorize(&client("192.168.1.1", None)).is_err());
        assert!(policy.authorize(&client("::1", None)).is_err());
    }

    #[test]
    fn defaults() {
        let cluster = [parse_net("10.0.0.0/8").unwrap()];
        let id = name("web", "demo");
        let cases = [
            (DefaultPolicy::AllUnauthenticated, [true, true, true, true]),
            (DefaultPolicy::AllAuthenticated, [false, true, false, true]),
            (
                DefaultPolicy::ClusterUnauthenticated,
                [true, true, false, false],
            ),
            (
                DefaultPolicy::ClusterAuthenticated,
                [false, true, false, false],
            ),
            (DefaultPolicy::Deny, [false, false, false, false]),
        ];
        for (default, want) in cases {
            let p = default.policy(&cluster);
            assert_eq!(p.name.as_ref(), format!("default:{default}"));
            let got = [
                p.authorize(&client("10.0.0.1", None)).is_ok(),
                p.authorize(&client("10.0.0.1", Some(&id))).is_ok(),
                p.authorize(&client("8.8.8.8", None)).is_ok(),
                p.authorize(&client("8.8.8.8", Some(&id))).is_ok(),
            ];
            assert_eq!(got, want, "{default}");
            assert_eq!(default.as_str().parse::<DefaultPolicy>().unwrap(), default);
        }
        let err = "allow".parse::<DefaultPolicy>().unwrap_err().to_string();
        assert!(err.contains("all-unauthenticated"), "{err}");
    }

    #[test]
    fn the_api_form_is_read_and_bad_input_refused() {
        let mut wire = api::InboundServer {
            name: "books-http".into(),
            protocol: api::ProxyProtocol::Grpc as i32,
            authorizations: vec![api::Authorization {
                name: "web".into(),
                networks: vec![api::Network {
                    cidr: "127.0.0.1".into(),
                    except: vec![],
                }],
                authentication: Some(api::authorization::Authentication::MeshTls(api::MeshTls {
                    identities: vec![name("web", "demo").to_string()],
                    suffixes: vec!["*".into()],
                })),
            }],
        };
        let policy = ServerPolicy::from_api(&wire).unwrap();
        assert_eq!(policy.protocol, Protocol::Grpc);
        assert_eq!(
            policy.authorizations[0].networks[0].net,
            parse_net("127.0.0.1/32").unwrap()
        );

        wire.authorizations[0].networks[0].cidr = "10.0.0.0/33".into();
        assert!(ServerPolicy::from_api(&wire).is_err());
        wire.authorizations[0].networks.clear();
        wire.authorizations[0].authentication = None;
        assert!(ServerPolicy::from_api(&wire)
            .unwrap_err()
            .0
            .contains("authentication"));
        wire.protocol = 99;
        assert!(ServerPolicy::from_api(&wire).is_err());
        assert!(parse_suffix("prod.*").is_err());
        assert!(parse_suffix("*.").is_err());
    }
}
