//! Service-profile routes.
//!
//! A profile (from the controller's `GetProfile`) lists routes in order; a request takes the
//! first whose condition matches, and the route's name labels its metrics, its timeout bounds
//! the wait for response headers, and its response classes say which responses are failures.
//! Conditions combine method, path (a regular expression matched against the whole path),
//! and headers (exact value or whole-value regular expression) with `all`, `any` and `not`.
//!
//! Regular expressions come from the controller, so they are compiled with a size limit, and
//! with the `regex` crate, whose matching time is linear in the input: a hostile pattern can
//! neither exhaust memory nor backtrack forever. A route that does not compile is left out
//! (and logged); the others still apply.

#![forbid(unsafe_code)]

use conduit_api::destination as api;
use http::{HeaderName, HeaderValue, Method};
use std::sync::Arc;
use std::time::Duration;

/// Compiled regular expressions are at most this large.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A profile's routes, in match order.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    routes: Vec<Arc<Route>>,
}

/// One route.
#[derive(Clone, Debug)]
pub struct Route {
    name: Arc<str>,
    condition: RequestMatch,
    timeout: Option<Duration>,
    retryable: bool,
    classes: Vec<(ResponseMatch, bool)>,
}

/// Why a route cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("route {route:?}: {reason}")]
pub struct InvalidRoute {
    route: String,
    reason: String,
}

#[derive(Clone, Debug)]
enum RequestMatch {
    All(Vec<RequestMatch>),
    Any(Vec<RequestMatch>),
    Not(Box<RequestMatch>),
    Path(regex::Regex),
    Method(Method),
    Header(HeaderName, ValueMatch),
}

#[derive(Clone, Debug)]
enum ValueMatch {
    Exact(HeaderValue),
    Regex(regex::Regex),
}

#[derive(Clone, Debug)]
enum ResponseMatch {
    All(Vec<ResponseMatch>),
    Any(Vec<ResponseMatch>),
    Not(Box<ResponseMatch>),
    Status(u16, u16),
}

impl Routes {
    /// The routes of `profile`; routes that do not compile are left out and logged.
    pub fn from_profile(profile: &api::DestinationProfile) -> Self {
        let routes = profile
            .routes
            .iter()
            .filter_map(|r| match Route::compile(r) {
                Ok(route) => Some(Arc::new(route)),
                Err(error) => {
                    tracing::warn!(%error, "ignoring a profile route");
                    None
                }
            })
            .collect();
        Self { routes }
    }

    /// The first route `req` matches.
    pub fn find<B>(&self, req: &http::Request<B>) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.condition.matches(req))
    }

    /// The number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True with no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

impl Route {
    /// Compiles one route.
    pub fn compile(route: &api::Route) -> Result<Self, InvalidRoute> {
        let invalid = |reason: String| InvalidRoute {
            route: route.name.clone(),
            reason,
        };
        let condition = match &route.condition {
            Some(c) => RequestMatch::compile(c).map_err(invalid)?,
            None => return Err(invalid("no condition".into())),
        };
        let classes = route
            .response_classes
            .iter()
            .map(|c| match &c.condition {
                Some(m) => Ok((ResponseMatch::compile(m).map_err(invalid)?, c.is_failure)),
                None => Err(invalid("a response class has no condition".into())),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name: Arc::from(route.name.as_str()),
            condition,
            timeout: (route.timeout_ms > 0).then(|| Duration::from_millis(route.timeout_ms)),
            retryable: route.is_retryable,
            classes,
        })
    }

    /// The route's name (the `route` metric label).
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The time allowed for response headers, if limited.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Whether failed requests may be retried.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// Whether a response with `status` is a failure by the route's classes; `None` when no
    /// class matches (the default applies: 5xx is a failure).
    pub fn is_failure(&self, status: http::StatusCode) -> Option<bool> {
        let status = status.as_u16();
        self.classes
            .iter()
            .find(|(m, _)| m.matches(status))
            .map(|(_, failure)| *failure)
    }
}

fn compile_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("invalid regex {pattern:?}: {e}"))
}

impl RequestMatch {
    fn compile(m: &api::RequestMatch) -> Result<Self, String> {
        use api::request_match::Match;
        let seq = |s: &api::request_match::Seq| -> Result<Vec<RequestMatch>, String> {
            s.matches.iter().map(RequestMatch::compile).collect()
        };
        match &m.r#match {
            Some(Match::All(s)) => Ok(RequestMatch::All(seq(s)?)),
            Some(Match::Any(s)) => Ok(RequestMatch::Any(seq(s)?)),
            Some(Match::Not(inner)) => {
                Ok(RequestMatch::Not(Box::new(RequestMatch::compile(inner)?)))
            }
            Some(Match::Path(p)) => Ok(RequestMatch::Path(compile_regex(&p.regex)?)),
            Some(Match::Method(m)) => Method::from_bytes(m.method.as_bytes())
                .map(RequestMatch::Method)
                .map_err(|_| format!("invalid method {:?}", m.method)),
            Some(Match::Header(h)) => {
                let name = HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|_| format!("invalid header name {:?}", h.name))?;
                let value = match &h.value {
                    Some(api::header_match::Value::Exact(v)) => ValueMatch::Exact(
                        HeaderValue::from_str(v)
                            .map_err(|_| format!("invalid header value {v:?}"))?,
                    ),
                    Some(api::header_match::Value::Regex(r)) => {
                        ValueMatch::Regex(compile_regex(r)?)
                    }
                    None => return Err(format!("header {:?} has no value to match", h.name)),
                };
                Ok(RequestMatch::Header(name, value))
            }
            None => Err("an empty condition".into()),
        }
    }

    fn matches<B>(&self, req: &http::Request<B>) -> bool {
        match self {
            RequestMatch::All(ms) => ms.iter().all(|m| m.matches(req)),
            RequestMatch::Any(ms) => ms.iter().any(|m| m.matches(req)),
            RequestMatch::Not(m) => !m.matches(req),
            RequestMatch::Path(re) => re.is_match(req.uri().path()),
            RequestMatch::Method(method) => req.method() == method,
            RequestMatch::Header(name, value) => {
                req.headers().get_all(name).iter().any(|v| match value {
                    ValueMatch::Exact(want) => v == want,
                    ValueMatch::Regex(re) => v.to_str().is_ok_and(|s| re.is_match(s)),
                })
            }
        }
    }
}

impl ResponseMatch {
    fn compile(m: &api::ResponseMatch) -> Result<Self, String> {
        use api::response_match::Match;
        let seq = |s: &api::response_match::Seq| -> Result<Vec<ResponseMatch>, String> {
            s.matches.iter().map(ResponseMatch::compile).collect()
        };
        match &m.r#match {
            Some(Match::All(s)) => Ok(ResponseMatch::All(seq(s)?)),
            Some(Match::Any(s)) => Ok(ResponseMatch::Any(seq(s)?)),
            Some(Match::Not(inner)) => {
                Ok(ResponseMatch::Not(Box::new(ResponseMatch::compile(inner)?)))
            }
            Some(Match::Status(r)) => {
                let max = if r.max == 0 { r.min } else { r.max };
                match (u16::try_from(r.min), u16::try_from(max)) {
                    (Ok(min), Ok(max)) if min <= max => Ok(ResponseMatch::Status(min, max)),
                    _ => Err(format!("invalid status range {}..={}", r.min, r.max)),
                }
            }
            None => Err("an empty response condition".into()),
        }
    }

    fn matches(&self, status: u16) -> bool {
        match self {
            ResponseMatch::All(ms) => ms.iter().all(|m| m.matches(status)),
            ResponseMatch::Any(ms) => ms.iter().any(|m| m.matches(status)),
            ResponseMatch::Not(m) => !m.matches(status),
            ResponseMatch::Status(min, max) => (*min..=*max).contains(&status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::request_match::{Match, Seq};

    fn path(re: &str) -> api::RequestMatch {
        api::RequestMatch {
            r#match: Some(Match::Path(api::PathMatch { regex: re.into() })),
        }
    }

    fn method(m: &str) -> api::RequestMatch {
        api::RequestMatch {
            r#match: Some(Match::Method(api::MethodMatch { method: m.into() })),
        }
    }

    fn route(name: &str, condition: api::RequestMatch) -> api::Route {
        api::Route {
            name: name.into(),
            condition: Some(condition),
            timeout_ms: 250,
            ..Default::default()
        }
    }

    fn req(m: &str, uri: &str) -> http::Request<()> {
        http::Request::builder()
            .method(m)
            .uri(uri)
            .body(())
            .unwrap()
    }

    #[test]
    fn the_first_matching_route_wins_and_paths_match_whole() {
        let profile = api::DestinationProfile {
            routes: vec![
                route(
                    "GET /books/{id}",
                    api::RequestMatch {
                        r#match: Some(Match::All(Seq {
                            matches: vec![method("GET"), path(r"/books/\d+")],
                        })),
                    },
                ),
                route("books", path("/books.*")),
            ],
            ..Default::default()
        };
        let routes = Routes::from_profile(&profile);
        let name = |m, u| routes.find(&req(m, u)).map(|r| r.name().to_string());
        assert_eq!(
            name("GET", "/books/12?x=1").as_deref(),
            Some("GET /books/{id}")
        );
        assert_eq!(name("POST", "/books/12").as_deref(), Some("books"));
        assert_eq!(name("GET", "/books/12/x").as_deref(), Some("books"));
        assert_eq!(
            name("GET", "/authors/1"),
            None,
            "anchored: no partial match"
        );
        let first = routes.find(&req("GET", "/books/1")).unwrap();
        assert_eq!(first.timeout(), Some(Duration::from_millis(250)));
    }

    #[test]
    fn headers_not_and_response_classes() {
        let header = api::RequestMatch {
            r#match: Some(Match::Header(api::HeaderMatch {
                name: "x-canary".into(),
                value: Some(api::header_match::Value::Exact("yes".into())),
            })),
        };
        let not_canary = api::RequestMatch {
            r#match: Some(Match::Not(Box::new(header.clone()))),
        };
        let mut canary = route("canary", header);
        canary.response_classes = vec![api::ResponseClass {
            condition: Some(api::ResponseMatch {
                r#match: Some(api::response_match::Match::Status(api::HttpStatusRange {
                    min: 404,
                    max: 0,
                })),
            }),
            is_failure: true,
        }];
        let routes = Routes::from_profile(&api::DestinationProfile {
            routes: vec![canary, route("stable", not_canary)],
            ..Default::default()
        });
        let mut r = req("GET", "/");
        assert_eq!(routes.find(&r).unwrap().name().as_ref(), "stable");
        r.headers_mut()
            .insert("x-canary", HeaderValue::from_static("yes"));
        let canary = routes.find(&r).unwrap();
        assert_eq!(canary.name().as_ref(), "canary");
        assert_eq!(canary.is_failure(http::StatusCode::NOT_FOUND), Some(true));
        assert_eq!(canary.is_failure(http::StatusCode::OK), None);
    }

    #[test]
    fn a_bad_route_is_left_out_and_the_others_apply() {
        let routes = Routes::from_profile(&api::DestinationProfile {
            routes: vec![route("bad", path("(unclosed")), route("good", path("/.*"))],
            ..Default::default()
        });
        assert_eq!(routes.len(), 1);
        assert_eq!(
            routes.find(&req("GET", "/x")).unwrap().name().as_ref(),
            "good"
        );
        let huge = "(a{1000}){1000}";
        assert!(
            Route::compile(&route("huge", path(huge))).is_err(),
            "the size limit holds"
        );
    }
}
