//! Tap filters and their evaluation over what is known of a request.
//!
//! Some facts are known only once the response starts: the profile route the router chose,
//! and on the outbound side the destination endpoint's labels. A filter is therefore
//! evaluated in three-valued (Kleene) logic: a leaf on a fact not yet known is
//! [`Truth::Unknown`], `all` is false as soon as one part is false, `any` true as soon as
//! one is true, and `not` keeps unknown unknown. A request whose filter is still unknown at
//! request time is decided again at response time, with every fact known.

use conduit_api::tap as api;
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Workload labels (`namespace`, `pod`, `deployment`...).
pub type Labels = BTreeMap<String, String>;

/// Deepest filter accepted: deep enough for any query a person writes, shallow enough that
/// evaluation's recursion is bounded.
pub const MAX_DEPTH: usize = 16;
/// Most leaves and combinators in one filter.
pub const MAX_NODES: usize = 256;

/// A filter the proxy cannot use, with the reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid tap filter: {0}")]
pub struct InvalidMatch(String);

/// A request filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// Every part matches (an empty list matches everything).
    All(Vec<Match>),
    /// Some part matches (an empty list matches nothing).
    Any(Vec<Match>),
    /// The part does not match.
    Not(Box<Match>),
    /// The client's address.
    Source(Net),
    /// The address the request was sent to.
    Destination(Net),
    /// The request method, exactly.
    Method(http::Method),
    /// The request's authority.
    Authority(AuthorityMatch),
    /// The request path (without the query) starts with this.
    PathPrefix(String),
    /// The profile route's name.
    Route(String),
    /// A label of the source workload.
    SourceLabel(String, String),
    /// A label of the destination workload.
    DestinationLabel(String, String),
}

/// A network, a port, or both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Net {
    net: Option<IpNet>,
    port: Option<u16>,
}

/// An authority filter: a host (or `*.` suffix), case-insensitive, with an optional port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorityMatch {
    host: HostMatch,
    port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostMatch {
    Exact(String),
    /// Stored with its leading dot: `.demo.svc.cluster.local`.
    Suffix(String),
}

/// What is known of a request when a filter is evaluated; `None` is not known yet.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    /// The client.
    pub source: SocketAddr,
    /// Where the request was sent.
    pub destination: SocketAddr,
    /// The method.
    pub method: &'a http::Method,
    /// `host[:port]`, from the URI or the `Host` header.
    pub authority: Option<&'a str>,
    /// The path, without the query.
    pub path: &'a str,
    /// The source workload's labels.
    pub source_labels: Option<&'a Labels>,
    /// The destination workload's labels.
    pub destination_labels: Option<&'a Labels>,
    /// The route: `Some(None)` once known that no route matched.
    pub route: Option<Option<&'a str>>,
}

/// The value of a filter over facts that may be incomplete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truth {
    /// Matches.
    Yes,
    /// Does not match.
    No,
    /// Depends on a fact not known yet.
    Unknown,
}

impl From<bool> for Truth {
    fn from(b: bool) -> Self {
        if b {
            Truth::Yes
        } else {
            Truth::No
        }
    }
}

impl Match {
    /// The filter that matches every request.
    pub fn everything() -> Self {
        Match::All(Vec::new())
    }

    /// Reads the API's filter; an absent one matches everything.
    pub fn from_api(m: Option<api::Match>) -> Result<Self, InvalidMatch> {
        let mut nodes = 0;
        match m {
            None => Ok(Self::everything()),
            Some(m) => Self::parse(m, 1, &mut nodes),
        }
    }

    fn parse(m: api::Match, depth: usize, nodes: &mut usize) -> Result<Self, InvalidMatch> {
        use api::r#match::{http::Match as H, Match as M};
        *nodes += 1;
        if depth > MAX_DEPTH {
            return Err(InvalidMatch(format!("nested deeper than {MAX_DEPTH}")));
        }
        if *nodes > MAX_NODES {
            return Err(InvalidMatch(format!("more than {MAX_NODES} parts")));
        }
        let seq = |s: api::r#match::Seq, nodes: &mut usize| {
            s.matches
                .into_iter()
                .map(|m| Self::parse(m, depth + 1, nodes))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(match m.r#match {
            // The empty message: nothing matches it.
            None => Match::Any(Vec::new()),
            Some(M::All(s)) => Match::All(seq(s, nodes)?),
            Some(M::Any(s)) => Match::Any(seq(s, nodes)?),
            Some(M::Not(m)) => Match::Not(Box::new(Self::parse(*m, depth + 1, nodes)?)),
            Some(M::Source(n)) => Match::Source(Net::from_api(n)?),
            Some(M::Destination(n)) => Match::Destination(Net::from_api(n)?),
            Some(M::SourceLabel(l)) => Match::SourceLabel(l.key, l.value),
            Some(M::DestinationLabel(l)) => Match::DestinationLabel(l.key, l.value),
            Some(M::Http(h)) => match h.r#match {
                None => return Err(InvalidMatch("an empty HTTP match".into())),
                Some(H::Method(m)) => Match::Method(
                    http::Method::from_bytes(m.as_bytes())
                        .map_err(|_| InvalidMatch(format!("method {m:?}")))?,
                ),
                Some(H::Authority(a)) => Match::Authority(AuthorityMatch::parse(&a)?),
                Some(H::PathPrefix(p)) => {
                    if !p.starts_with('/') {
                        return Err(InvalidMatch(format!(
                            "path prefix {p:?} does not start with '/'"
                        )));
                    }
                    Match::PathPrefix(p)
                }
                Some(H::Route(r)) => Match::Route(r),
            },
        })
    }

    /// Evaluates the filter over `facts`.
    pub fn eval(&self, facts: &Facts<'_>) -> Truth {
        match self {
            Match::All(parts) => {
                let mut acc = Truth::Yes;
                for p in parts {
                    match p.eval(facts) {
                        Truth::No => return Truth::No,
                        Truth::Unknown => acc = Truth::Unknown,
                        Truth::Yes => {}
                    }
                }
                acc
            }
            Match::Any(parts) => {
                let mut acc = Truth::No;
                for p in parts {
                    match p.eval(facts) {
                        Truth::Yes => return Truth::Yes,
                        Truth::Unknown => acc = Truth::Unknown,
                        Truth::No => {}
                    }
                }
                acc
            }
            Match::Not(m) => match m.eval(facts) {
                Truth::Yes => Truth::No,
                Truth::No => Truth::Yes,
                Truth::Unknown => Truth::Unknown,
            },
            Match::Source(n) => n.matches(facts.source).into(),
            Match::Destination(n) => n.matches(facts.destination).into(),
            Match::Method(m) => (m == facts.method).into(),
            Match::Authority(a) => facts.authority.is_some_and(|x| a.matches(x)).into(),
            Match::PathPrefix(p) => facts.path.starts_with(p.as_str()).into(),
            Match::Route(r) => match facts.route {
                None => Truth::Unknown,
                Some(route) => (route == Some(r.as_str())).into(),
            },
            Match::SourceLabel(k, v) => label(facts.source_labels, k, v),
            Match::DestinationLabel(k, v) => label(facts.destination_labels, k, v),
        }
    }
}

fn label(labels: Option<&Labels>, key: &str, value: &str) -> Truth {
    match labels {
        None => Truth::Unknown,
        Some(l) => (l.get(key).map(String::as_str) == Some(value)).into(),
    }
}

impl Net {
    fn from_api(n: api::r#match::Net) -> Result<Self, InvalidMatch> {
        let net = match n.cidr.as_str() {
            "" => None,
            cidr => Some(parse_net(cidr)?),
        };
        let port = match n.port {
            0 => None,
            p => Some(u16::try_from(p).map_err(|_| InvalidMatch(format!("port {p}")))?),
        };
        if net.is_none() && port.is_none() {
            return Err(InvalidMatch(
                "an address match with neither network nor port".into(),
            ));
        }
        Ok(Net { net, port })
    }

    fn matches(&self, addr: SocketAddr) -> bool {
        self.net.is_none_or(|n| n.contains(&addr.ip()))
            && self.port.is_none_or(|p| p == addr.port())
    }
}

fn parse_net(s: &str) -> Result<IpNet, InvalidMatch> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<std::net::IpAddr>()
        .map(IpNet::from)
        .map_err(|_| InvalidMatch(format!("network {s:?}")))
}

impl AuthorityMatch {
    /// `host`, `host:port`, `*.suffix` or `*.suffix:port`.
    pub fn parse(s: &str) -> Result<Self, InvalidMatch> {
        let invalid = || InvalidMatch(format!("authority {s:?}"));
        let (host, port) = split_authority(s).ok_or_else(invalid)?;
        let port = match port {
            None => None,
            Some(p) => Some(p.parse::<u16>().map_err(|_| invalid())?),
        };
        let host = host.to_ascii_lowercase();
        let host = match host.strip_prefix('*') {
            Some(suffix) if suffix.starts_with('.') && suffix.len() > 1 => {
                HostMatch::Suffix(suffix.to_string())
            }
            Some(_) => return Err(invalid()),
            None if !host.is_empty() => HostMatch::Exact(host),
            None => return Err(invalid()),
        };
        Ok(AuthorityMatch { host, port })
    }

    fn matches(&self, authority: &str) -> bool {
        let Some((host, port)) = split_authority(authority) else {
            return false;
        };
        if let Some(want) = self.port {
            if port.and_then(|p| p.parse::<u16>().ok()) != Some(want) {
                return false;
            }
        }
        match &self.host {
            HostMatch::Exact(h) => host.eq_ignore_ascii_case(h),
            HostMatch::Suffix(s) => {
                host.len() > s.len()
                    && host.is_char_boundary(host.len() - s.len())
                    && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        }
    }
}

/// Splits `host[:port]`, with IPv6 hosts in brackets.
fn split_authority(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host, Some(port))),
        Some(_) => None,
        None => Some((s, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::r#match::{http::Match as H, Match as M};

    fn http(h: H) -> api::Match {
        api::Match {
            r#match: Some(M::Http(api::r#match::Http { r#match: Some(h) })),
        }
    }

    fn seq(all: bool, parts: Vec<api::Match>) -> api::Match {
        let s = api::r#match::Seq { matches: parts };
        api::Match {
            r#match: Some(if all { M::All(s) } else { M::Any(s) }),
        }
    }

    fn facts<'a>(labels: &'a Labels, route: Option<Option<&'a str>>) -> Facts<'a> {
        Facts {
            source: "10.1.2.3:40000".parse().unwrap(),
            destination: "10.9.0.7:7001".parse().unwrap(),
            method: &http::Method::GET,
            authority: Some("Books.demo.svc.cluster.local:7001"),
            path: "/books/12",
            source_labels: Some(labels),
            destination_labels: None,
            route,
        }
    }

    fn eval(m: api::Match, f: &Facts<'_>) -> Truth {
        Match::from_api(Some(m)).unwrap().eval(f)
    }

    #[test]
    fn leaves_match_and_miss() {
        let labels = Labels::from([("deployment".into(), "web".into())]);
        let f = facts(&labels, Some(None));
        let net = |cidr: &str, port| api::Match {
            r#match: Some(M::Source(api::r#match::Net {
                cidr: cidr.into(),
                port,
            })),
        };
        assert_eq!(eval(net("10.1.0.0/16", 0), &f), Truth::Yes);
        assert_eq!(eval(net("10.2.0.0/16", 0), &f), Truth::No);
        assert_eq!(eval(net("10.1.2.3", 40000), &f), Truth::Yes);
        assert_eq!(eval(net("", 40001), &f), Truth::No);
        assert_eq!(eval(http(H::Method("GET".into())), &f), Truth::Yes);
        assert_eq!(eval(http(H::Method("POST".into())), &f), Truth::No);
        assert_eq!(eval(http(H::PathPrefix("/books".into())), &f), Truth::Yes);
        assert_eq!(eval(http(H::PathPrefix("/authors".into())), &f), Truth::No);
        for yes in [
            "books.demo.svc.cluster.local",
            "BOOKS.demo.svc.cluster.local:7001",
            "*.demo.svc.cluster.local",
            "*.svc.cluster.local:7001",
        ] {
            assert_eq!(
                eval(http(H::Authority(yes.into())), &f),
                Truth::Yes,
                "{yes}"
            );
        }
        for no in [
            "books.demo.svc.cluster.local:7002",
            "*.books.demo.svc.cluster.local",
            "authors.demo.svc.cluster.local",
            "*.other.svc.cluster.local",
        ] {
            assert_eq!(eval(http(H::Authority(no.into())), &f), Truth::No, "{no}");
        }
        let label = |k: &str, v: &str| api::Match {
            r#match: Some(M::SourceLabel(api::r#match::Label {
                key: k.into(),
                value: v.into(),
            })),
        };
        assert_eq!(eval(label("deployment", "web"), &f), Truth::Yes);
        assert_eq!(eval(label("deployment", "books"), &f), Truth::No);
    }

    #[test]
    fn facts_known_late_are_unknown_until_known() {
        let labels = Labels::new();
        let route = || http(H::Route("GET /books/{id}".into()));
        assert_eq!(eval(route(), &facts(&labels, None)), Truth::Unknown);
        assert_eq!(
            eval(route(), &facts(&labels, Some(Some("GET /books/{id}")))),
            Truth::Yes
        );
        assert_eq!(eval(route(), &facts(&labels, Some(None))), Truth::No);
        let dst_label = api::Match {
            r#match: Some(M::DestinationLabel(api::r#match::Label {
                key: "deployment".into(),
                value: "books".into(),
            })),
        };
        assert_eq!(eval(dst_label, &facts(&labels, None)), Truth::Unknown);
    }

    #[test]
    fn combinators_follow_kleene_logic() {
        let labels = Labels::new();
        let f = facts(&labels, None);
        let yes = || http(H::Method("GET".into()));
        let no = || http(H::Method("PUT".into()));
        let unknown = || http(H::Route("r".into()));
        let not = |m: api::Match| api::Match {
            r#match: Some(M::Not(Box::new(m))),
        };
        assert_eq!(eval(seq(true, vec![yes(), unknown()]), &f), Truth::Unknown);
        assert_eq!(eval(seq(true, vec![no(), unknown()]), &f), Truth::No);
        assert_eq!(eval(seq(false, vec![yes(), unknown()]), &f), Truth::Yes);
        assert_eq!(eval(seq(false, vec![no(), unknown()]), &f), Truth::Unknown);
        assert_eq!(eval(not(unknown()), &f), Truth::Unknown);
        assert_eq!(eval(not(no()), &f), Truth::Yes);
        assert_eq!(eval(seq(true, vec![]), &f), Truth::Yes);
        assert_eq!(eval(seq(false, vec![]), &f), Truth::No);
        assert_eq!(eval(api::Match { r#match: None }, &f), Truth::No);
        assert_eq!(Match::from_api(None).unwrap().eval(&f), Truth::Yes);
    }

    #[test]
    fn bad_filters_are_refused_with_a_reason() {
        let net = |cidr: &str, port| api::Match {
            r#match: Some(M::Destination(api::r#match::Net {
                cidr: cidr.into(),
                port,
            })),
        };
        for bad in [
            net("10.0.0.0/33", 0),
            net("not-an-ip", 0),
            net("", 0),
            net("", 70000),
            http(H::Method("G E T".into())),
            http(H::PathPrefix("books".into())),
            http(H::Authority("*books".into())),
            http(H::Authority("a:b:c".into())),
            http(H::Authority("host:port".into())),
            http(H::Authority("".into())),
        ] {
            let err = Match::from_api(Some(bad.clone())).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid tap filter: "),
                "{bad:?}"
            );
        }
        let mut deep = http(H::Method("GET".into()));
        for _ in 0..MAX_DEPTH {
            deep = api::Match {
                r#match: Some(M::Not(Box::new(deep))),
            };
        }
        assert!(Match::from_api(Some(deep)).is_err());
        let wide = seq(
            true,
            (0..MAX_NODES)
                .map(|_| http(H::Method("GET".into())))
                .collect(),
        );
        assert!(Match::from_api(Some(wide)).is_err());
    }
}
