//! Service profiles as written by people (the file registry and the `ServiceProfile` CRD
//! share these types, in Linkerd's field names), and their checked conversion to the API.

use conduit_api::destination as api;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A profile's spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileSpec {
    /// Routes, matched in order.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// The budget shared by retries to the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudgetSpec>,
    /// Traffic split: other authorities and their weights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dst_overrides: Vec<WeightedDstSpec>,
}

/// One route.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteSpec {
    /// The `route` metric label.
    pub name: String,
    /// Which requests it takes.
    pub condition: RequestMatchSpec,
    /// How its responses are classified.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_classes: Vec<ResponseClassSpec>,
    /// Time allowed for the response's headers (`300ms`, `2s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Whether failures may be retried.
    #[serde(default)]
    pub is_retryable: bool,
}

/// A request condition; every field given must match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestMatchSpec {
    /// A regular expression matched against the whole path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    /// An HTTP method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// A header condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatchSpec>,
    /// All of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Vec<RequestMatchSpec>>,
    /// Any of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<Vec<RequestMatchSpec>>,
    /// Not this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not: Option<Box<RequestMatchSpec>>,
}

/// A header condition: `exact` or `regex`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMatchSpec {
    /// The header's name.
    pub name: String,
    /// Its value equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// Its value matches this regular expression in whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// A response class.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResponseClassSpec {
    /// Which responses.
    pub condition: ResponseMatchSpec,
    /// Whether they are failures.
    #[serde(default)]
    pub is_failure: bool,
}

/// A response condition; every field given must match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResponseMatchSpec {
    /// A status range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusRangeSpec>,
    /// All of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Vec<ResponseMatchSpec>>,
    /// Any of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<Vec<ResponseMatchSpec>>,
    /// Not this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not: Option<Box<ResponseMatchSpec>>,
}

/// An inclusive range of statuses.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusRangeSpec {
    /// The lowest status.
    pub min: u16,
    /// The highest; `min` alone when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u16>,
}

/// A retry budget.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryBudgetSpec {
    /// Retries as a fraction of requests.
    pub retry_ratio: f32,
    /// Retries allowed per second regardless.
    pub min_retries_per_second: u32,
    /// The window requests are counted over (`10s`).
    pub ttl: String,
}

/// A traffic-split destination.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedDstSpec {
    /// The authority.
    pub authority: String,
    /// Its weight.
    pub weight: u32,
}

/// A profile that cannot be used, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidProfile(String);

impl ProfileSpec {
    /// The API form, with every regular expression and duration checked.
    pub fn to_api(&self) -> Result<api::DestinationProfile, InvalidProfile> {
        let routes = self
            .routes
            .iter()
            .map(|r| {
                r.to_api()
                    .map_err(|e| InvalidProfile(format!("route {:?}: {}", r.name, e.0)))
            })
            .collect::<Result<_, _>>()?;
        let retry_budget = match &self.retry_budget {
            Some(b) => {
                if !(0.0..=1000.0).contains(&b.retry_ratio) {
                    return Err(InvalidProfile(format!(
                        "retryBudget.retryRatio {} is out of range",
                        b.retry_ratio
                    )));
                }
                Some(api::RetryBudget {
                    retry_ratio: b.retry_ratio,
                    min_retries_per_second: b.min_retries_per_second,
                    ttl_ms: millis(&b.ttl, "retryBudget.ttl")?,
                })
            }
            None => None,
        };
        Ok(api::DestinationProfile {
            fully_qualified_name: String::new(),
            routes,
            retry_budget,
            dst_overrides: self
                .dst_overrides
                .iter()
                .map(|d| api::WeightedDst {
                    authority: d.authority.clone(),
                    weight: d.weight,
                })
                .collect(),
            opaque_protocol: false,
        })
    }
}

impl RouteSpec {
    fn to_api(&self) -> Result<api::Route, InvalidProfile> {
        Ok(api::Route {
            name: self.name.clone(),
            condition: Some(self.condition.to_api()?),
            response_classes: self
                .response_classes
                .iter()
                .map(|c| {
                    Ok(api::ResponseClass {
                        condition: Some(c.condition.to_api()?),
                        is_failure: c.is_failure,
                    })
                })
                .collect::<Result<_, InvalidProfile>>()?,
            timeout_ms: match &self.timeout {
                Some(t) => millis(t, "timeout")?,
                None => 0,
            },
            is_retryable: self.is_retryable,
        })
    }
}

fn millis(text: &str, field: &str) -> Result<u64, InvalidProfile> {
    let d: Duration = humantime::parse_duration(text)
        .map_err(|e| InvalidProfile(format!("{field} {text:?}: {e}")))?;
    u64::try_from(d.as_millis()).map_err(|_| InvalidProfile(format!("{field} is too long")))
}

fn check_regex(regex: &str) -> Result<(), InvalidProfile> {
    regex::Regex::new(regex)
        .map(drop)
        .map_err(|e| InvalidProfile(format!("invalid regex {regex:?}: {e}")))
}

impl RequestMatchSpec {
    /// All the fields given, as one condition (an `all` when several).
    fn to_api(&self) -> Result<api::RequestMatch, InvalidProfile> {
        use api::request_match::Match;
        let mut parts = Vec::new();
        if let Some(regex) = &self.path_regex {
            check_regex(regex)?;
            parts.push(Match::Path(api::PathMatch {
                regex: regex.clone(),
            }));
        }
        if let Some(method) = &self.method {
            if http_method_invalid(method) {
                return Err(InvalidProfile(format!("invalid method {method:?}")));
            }
            parts.push(Match::Method(api::MethodMatch {
                method: method.to_ascii_uppercase(),
            }));
        }
        if let Some(header) = &self.header {
            let value = match (&header.exact, &header.regex) {
                (Some(exact), None) => api::header_match::Value::Exact(exact.clone()),
                (None, Some(regex)) => {
                    check_regex(regex)?;
                    api::header_match::Value::Regex(regex.clone())
                }
                _ => {
                    return Err(InvalidProfile(format!(
                        "header {:?} needs exactly one of exact and regex",
                        header.name
                    )))
                }
            };
            parts.push(Match::Header(api::HeaderMatch {
                name: header.name.to_ascii_lowercase(),
                value: Some(value),
            }));
        }
        combine(parts, &self.all, &self.any, &self.not, "a condition")
    }
}

impl Condition for RequestMatchSpec {
    type Api = api::RequestMatch;
    type Match = api::request_match::Match;
    fn to_api(&self) -> Result<Self::Api, InvalidProfile> {
        RequestMatchSpec::to_api(self)
    }
    fn all(matches: Vec<Self::Api>) -> Self::Match {
        api::request_match::Match::All(api::request_match::Seq { matches })
    }
    fn any(matches: Vec<Self::Api>) -> Self::Match {
        api::request_match::Match::Any(api::request_match::Seq { matches })
    }
    fn not(inner: Self::Api) -> Self::Match {
        api::request_match::Match::Not(Box::new(inner))
    }
    fn wrap(m: Self::Match) -> Self::Api {
        api::RequestMatch { r#match: Some(m) }
    }
}

impl ResponseMatchSpec {
    fn to_api(&self) -> Result<api::ResponseMatch, InvalidProfile> {
        use api::response_match::Match;
        let mut parts = Vec::new();
        if let Some(status) = &self.status {
            let max = status.max.unwrap_or(status.min);
            if !(100..=599).contains(&status.min) || max < status.min || max > 599 {
                return Err(InvalidProfile(format!(
                    "invalid status range {}..={max}",
                    status.min
                )));
            }
            parts.push(Match::Status(api::HttpStatusRange {
                min: u32::from(status.min),
                max: u32::from(max),
            }));
        }
        combine(
            parts,
            &self.all,
            &self.any,
            &self.not,
            "a response condition",
        )
    }
}

impl Condition for ResponseMatchSpec {
    type Api = api::ResponseMatch;
    type Match = api::response_match::Match;
    fn to_api(&self) -> Result<Self::Api, InvalidProfile> {
        ResponseMatchSpec::to_api(self)
    }
    fn all(matches: Vec<Self::Api>) -> Self::Match {
        api::response_match::Match::All(api::response_match::Seq { matches })
    }
    fn any(matches: Vec<Self::Api>) -> Self::Match {
        api::response_match::Match::Any(api::response_match::Seq { matches })
    }
    fn not(inner: Self::Api) -> Self::Match {
        api::response_match::Match::Not(Box::new(inner))
    }
    fn wrap(m: Self::Match) -> Self::Api {
        api::ResponseMatch { r#match: Some(m) }
    }
}

/// What request and response conditions share: `all`, `any` and `not` over themselves, and
/// several fields given together meaning all of them.
trait Condition {
    type Api;
    type Match;
    fn to_api(&self) -> Result<Self::Api, InvalidProfile>;
    fn all(matches: Vec<Self::Api>) -> Self::Match;
    fn any(matches: Vec<Self::Api>) -> Self::Match;
    fn not(inner: Self::Api) -> Self::Match;
    fn wrap(m: Self::Match) -> Self::Api;
}

/// `parts` (the leaf fields already converted) with the combinators, as one condition.
fn combine<C: Condition>(
    mut parts: Vec<C::Match>,
    all: &Option<Vec<C>>,
    any: &Option<Vec<C>>,
    not: &Option<Box<C>>,
    what: &str,
) -> Result<C::Api, InvalidProfile> {
    let seq = |specs: &Vec<C>| specs.iter().map(C::to_api).collect::<Result<Vec<_>, _>>();
    if let Some(all) = all {
        parts.push(C::all(seq(all)?));
    }
    if let Some(any) = any {
        parts.push(C::any(seq(any)?));
    }
    if let Some(not) = not {
        parts.push(C::not(not.to_api()?));
    }
    let one = match parts.len() {
        0 => return Err(InvalidProfile(format!("{what} needs at least one field"))),
        1 => parts.pop(),
        _ => Some(C::all(parts.into_iter().map(C::wrap).collect())),
    };
    one.map(C::wrap)
        .ok_or_else(|| InvalidProfile(format!("{what} needs at least one field")))
}

fn http_method_invalid(method: &str) -> bool {
    method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_converts_with_its_conditions_and_timeout() {
        let spec: ProfileSpec = serde_yaml_ng::from_str(
            r#"
routes:
  - name: GET /books/{id}
    condition:
      method: get
      pathRegex: /books/\d+
    responseClasses:
      - condition: {status: {min: 500, max: 599}}
        isFailure: true
    timeout: 300ms
    isRetryable: true
retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 10, ttl: 10s}
"#,
        )
        .unwrap();
        let profile = spec.to_api().unwrap();
        let route = &profile.routes[0];
        assert_eq!(route.timeout_ms, 300);
        assert!(route.is_retryable);
        use api::request_match::Match;
        let Some(Match::All(all)) = &route.condition.as_ref().unwrap().r#match else {
            panic!("two fields make an `all`: {route:?}")
        };
        assert_eq!(all.matches.len(), 2);
        assert!(matches!(
            &all.matches[1].r#match,
            Some(Match::Method(m)) if m.method == "GET"
        ));
        assert_eq!(profile.retry_budget.unwrap().ttl_ms, 10_000);
    }

    #[test]
    fn bad_profiles_say_what_is_wrong() {
        let cases = [
            ("routes: [{name: a, condition: {pathRegex: '(unclosed'}}]", "invalid regex"),
            ("routes: [{name: a, condition: {}}]", "at least one field"),
            ("routes: [{name: a, condition: {method: GET}, timeout: soon}]", "timeout"),
            (
                "routes: [{name: a, condition: {method: GET}, responseClasses: [{condition: {status: {min: 700}}}]}]",
                "status range",
            ),
            (
                "routes: [{name: a, condition: {header: {name: x}}}]",
                "exactly one of",
            ),
        ];
        for (yaml, want) in cases {
            let spec: ProfileSpec = serde_yaml_ng::from_str(yaml).unwrap();
            let err = spec.to_api().unwrap_err().to_string();
            assert!(err.contains(want), "{yaml}: {err}");
            assert!(err.contains("route \"a\""), "{err}");
        }
    }
}
