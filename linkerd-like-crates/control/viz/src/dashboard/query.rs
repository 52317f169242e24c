//! The dashboard API's query strings, read into the gRPC APIs' requests.

use conduit_api::stats::{EdgesRequest, RoutesRequest, StatRequest};
use conduit_api::tap::r#match::{http::Match as H, Http, Match as M, Seq};
use conduit_api::tap::{Match, Resource, WatchRequest};
use std::collections::HashMap;
use std::time::Duration;

/// Requests a dashboard tap may ask for, at most.
const MAX_TAP_LIMIT: u32 = 1_000;

/// A query string's parameters (the last of each name wins).
#[derive(Debug, Default)]
pub(super) struct Query(HashMap<String, String>);

impl Query {
    pub(super) fn parse(query: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .into_owned()
                .filter(|(_, v)| !v.is_empty())
                .collect(),
        )
    }

    fn get(&self, key: &str) -> &str {
        self.0.get(key).map_or("", String::as_str)
    }

    fn resource(&self, kind: &str, name: &str) -> Option<Resource> {
        (!self.get(kind).is_empty()).then(|| Resource {
            namespace: self.get("namespace").to_string(),
            kind: self.get(kind).to_string(),
            name: self.get(name).to_string(),
        })
    }

    fn window(&self) -> Result<Option<prost_types::Duration>, String> {
        match self.0.get("window") {
            None => Ok(None),
            Some(w) => {
                let d: Duration = parse_duration(w)?;
                Ok(prost_types::Duration::try_from(d).ok())
            }
        }
    }

    pub(super) fn stat(&self) -> Result<StatRequest, String> {
        Ok(StatRequest {
            resource: Some(
                self.resource("kind", "name")
                    .ok_or("kind: which resources (deployment, pod, service, namespace)")?,
            ),
            from: self.resource("from_kind", "from_name"),
            to: self.resource("to_kind", "to_name"),
            window: self.window()?,
        })
    }

    pub(super) fn routes(&self) -> Result<RoutesRequest, String> {
        if self.get("service").is_empty() {
            return Err("service: whose routes".into());
        }
        Ok(RoutesRequest {
            service: Some(Resource {
                namespace: self.get("namespace").to_string(),
                kind: "service".into(),
                name: self.get("service").to_string(),
            }),
            from: None,
            window: self.window()?,
        })
    }

    pub(super) fn edges(&self) -> Result<EdgesRequest, String> {
        Ok(EdgesRequest {
            namespace: self.get("namespace").to_string(),
            kind: match self.get("kind") {
                "" => "deployment".to_string(),
                k => k.to_string(),
            },
            window: self.window()?,
        })
    }

    pub(super) fn tap(&self) -> Result<WatchRequest, String> {
        let http = |m: H| Match {
            r#match: Some(M::Http(Http { r#match: Some(m) })),
        };
        let mut all = Vec::new();
        if !self.get("method").is_empty() {
            all.push(http(H::Method(self.get("method").to_string())));
        }
        if !self.get("path").is_empty() {
            all.push(http(H::PathPrefix(self.get("path").to_string())));
        }
        let number = |key: &str, default: f64| -> Result<f64, String> {
            match self.0.get(key) {
                None => Ok(default),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite() && *n >= 0.0)
                    .ok_or_else(|| format!("{key}: not a number: {v:?}")),
            }
        };
        let limit = number("limit", 100.0)?.min(f64::from(MAX_TAP_LIMIT)) as u32;
        Ok(WatchRequest {
            target: Some(
                self.resource("kind", "name")
                    .ok_or("kind: whose proxies to tap")?,
            ),
            to: self.resource("to_kind", "to_name"),
            r#match: (!all.is_empty()).then_some(Match {
                r#match: Some(M::All(Seq { matches: all })),
            }),
            limit: limit.max(1),
            max_rps: number("max_rps", 10.0)?,
        })
    }
}

/// `30s`, `1m`, `90` (seconds).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("window: {s:?} is not a duration (30s, 1m)");
    let (n, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = n.parse().map_err(|_| bad())?;
    match unit {
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_become_requests() {
        let q = Query::parse(Some(
            "kind=deployment&namespace=demo&window=30s&to_kind=svc&to_name=books",
        ));
        let r = q.stat().unwrap();
        assert_eq!(r.resource.unwrap().namespace, "demo");
        assert_eq!(r.to.unwrap().name, "books");
        assert_eq!(r.window.unwrap().seconds, 30);
        assert!(Query::parse(Some("namespace=demo")).stat().is_err());
        assert!(Query::parse(Some("kind=pod&window=soon")).stat().is_err());

        let t = Query::parse(Some("kind=deploy&name=web&path=%2Fbooks&limit=5000"))
            .tap()
            .unwrap();
        assert_eq!(t.limit, MAX_TAP_LIMIT);
        assert_eq!(t.max_rps, 10.0);
        assert!(t.r#match.is_some());
        assert!(Query::parse(Some("kind=deploy&max_rps=NaN")).tap().is_err());
        assert_eq!(Query::parse(Some("")).edges().unwrap().kind, "deployment");
        assert!(Query::parse(None).routes().is_err());
    }
}
