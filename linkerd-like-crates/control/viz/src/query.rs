//! The Stats API's answers, computed from each proxy's window ([`Delta`]) and the index.

use crate::proxies::Proxy;
use crate::resource::{Kind, Labels, Resource};
use crate::window::{Delta, SeriesDelta};
use conduit_api::stats as api;
use conduit_control_destination::model::ServiceKey;
use conduit_control_destination::Index;
use std::collections::{BTreeMap, BTreeSet};

/// The route name of requests no route of the profile matched.
pub const DEFAULT_ROUTE: &str = "[DEFAULT]";

/// Counts, rate and latencies of some responses, merged.
#[derive(Debug, Default)]
pub struct Golden {
    requests: u64,
    successes: u64,
    rps: f64,
    latency: Option<hdrhistogram::Histogram<u64>>,
}

impl Golden {
    /// Adds a series' window (`elapsed` long).
    pub fn add(&mut self, s: &SeriesDelta, elapsed: std::time::Duration) {
        // Saturating: a proxy's counts are its own word, and must not overflow ours.
        self.requests = self.requests.saturating_add(s.count);
        if s.labels().success {
            self.successes = self.successes.saturating_add(s.count);
        }
        let secs = elapsed.as_secs_f64();
        if secs > 0.0 {
            self.rps += s.count as f64 / secs;
        }
        if self.latency.is_none() {
            // Proxies' precision: each of their buckets lands in a bucket of its own here.
            self.latency = hdrhistogram::Histogram::new(conduit_metrics::LATENCY_SIGFIG).ok();
        }
        if let Some(h) = self.latency.as_mut() {
            for (us, n) in &s.latency {
                let _ = h.record_n(*us, *n);
            }
        }
    }

    /// As the API's message.
    pub fn to_api(&self) -> api::Golden {
        let q = |q: f64| {
            self.latency
                .as_ref()
                .filter(|h| !h.is_empty())
                .map_or(0, |h| h.value_at_quantile(q))
        };
        api::Golden {
            requests: self.requests,
            successes: self.successes,
            rps: self.rps,
            p50_us: q(0.5),
            p95_us: q(0.95),
            p99_us: q(0.99),
        }
    }
}

/// A proxy's labels: its endpoint's, completed by what it says of itself.
fn labels_of(proxy: &Proxy, delta: &Delta) -> Labels {
    let mut labels = proxy.labels.clone();
    labels.extend(
        delta
            .latest
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    labels
}

fn dst_labels(s: &SeriesDelta) -> Labels {
    s.labels()
        .dst_labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn is(s: &SeriesDelta, d: api::Direction) -> bool {
    s.labels().direction == d as i32
}

/// What `Stat` asks.
#[derive(Clone, Debug)]
pub struct StatQuery {
    /// The rows' kind, narrowed by namespace and name.
    pub resource: Resource,
    /// Only requests from this resource's proxies.
    pub from: Option<Resource>,
    /// Only requests to this resource.
    pub to: Option<Resource>,
}

#[derive(Debug, Default)]
struct Row {
    golden: Golden,
    pods: BTreeSet<String>,
    meshed: BTreeSet<String>,
    tcp: u64,
}

/// `Stat`: one row per resource of the query's kind, known to the index or seen in traffic.
pub fn stat(
    index: &Index,
    deltas: &[(Proxy, Delta)],
    q: &StatQuery,
) -> Result<Vec<api::StatRow>, String> {
    let kind = q.resource.kind;
    if kind == Kind::All {
        return Err("stat needs a kind: deployment, pod, service or namespace".into());
    }
    if q.from.is_some() && q.to.is_some() {
        return Err("use --from or --to, not both".into());
    }
    if kind == Kind::Service && q.to.is_some() {
        return Err(
            "--to applies to workloads, pods and namespaces: for a service, use --from".into(),
        );
    }
    let mut rows: BTreeMap<(String, String), Row> = BTreeMap::new();
    for (key, endpoints) in index.endpoints_by_service() {
        for e in endpoints {
            let pod = e
                .labels
                .get("pod")
                .cloned()
                .unwrap_or_else(|| e.addr.ip().to_string());
            let row = match kind {
                Kind::Service => {
                    if !q.resource.matches(&e.labels) {
                        continue;
                    }
                    rows.entry((key.namespace.clone(), key.name.clone()))
                        .or_default()
                }
                _ => match Resource::of(kind, &e.labels) {
                    Some(r) if q.resource.matches(&e.labels) => rows.entry(r).or_default(),
                    _ => continue,
                },
            };
            row.pods.insert(pod.clone());
            if e.identity.is_some() {
                row.meshed.insert(pod);
            }
        }
    }
    // Meshed pods no service lists (clients) have rows too.
    if kind != Kind::Service {
        for pod in index.meshed_pods() {
            if let Some(r) =
                Resource::of(kind, &pod.labels).filter(|_| q.resource.matches(&pod.labels))
            {
                let name = pod
                    .labels
                    .get("pod")
                    .cloned()
                    .unwrap_or_else(|| pod.ip.to_string());
                let row = rows.entry(r).or_default();
                row.pods.insert(name.clone());
                row.meshed.insert(name);
            }
        }
    }
    for (proxy, delta) in deltas {
        let labels = labels_of(proxy, delta);
        let outbound = delta
            .responses
            .iter()
            .filter(|s| is(s, api::Direction::Outbound));
        match (&q.from, &q.to) {
            (None, None) if kind == Kind::Service => {
                for s in outbound {
                    let dst = dst_labels(s);
                    if let Some(r) = Resource::of(kind, &dst).filter(|_| q.resource.matches(&dst)) {
                        rows.entry(r).or_default().golden.add(s, delta.elapsed);
                    }
                }
            }
            (None, None) => {
                let Some(r) = Resource::of(kind, &labels).filter(|_| q.resource.matches(&labels))
                else {
                    continue;
                };
                let row = rows.entry(r).or_default();
                for s in delta
                    .responses
                    .iter()
                    .filter(|s| is(s, api::Direction::Inbound))
                {
                    row.golden.add(s, delta.elapsed);
                }
                row.tcp += delta
                    .latest
                    .tcp
                    .iter()
                    .filter(|t| t.accepted && t.direction == api::Direction::Inbound as i32)
                    .map(|t| t.open)
                    .sum::<u64>();
            }
            (Some(from), None) => {
                let mut with_labels = proxy.clone();
                with_labels.labels = labels;
                if !with_labels.is_of(from) {
                    continue;
                }
                for s in outbound {
                    let dst = dst_labels(s);
                    if let Some(r) = Resource::of(kind, &dst).filter(|_| q.resource.matches(&dst)) {
                        rows.entry(r).or_default().golden.add(s, delta.elapsed);
                    }
                }
            }
            (None, Some(to)) => {
                let Some(r) = Resource::of(kind, &labels).filter(|_| q.resource.matches(&labels))
                else {
                    continue;
                };
                let row = rows.entry(r).or_default();
                for s in outbound.filter(|s| to.matches(&dst_labels(s))) {
                    row.golden.add(s, delta.elapsed);
                }
            }
            (Some(_), Some(_)) => {}
        }
    }
    Ok(rows
        .into_iter()
        .map(|((ns, name), row)| api::StatRow {
            resource: Some(Resource::to_api(kind, &ns, &name)),
            meshed: u32::try_from(row.meshed.len()).unwrap_or(u32::MAX),
            pods: u32::try_from(row.pods.len()).unwrap_or(u32::MAX),
            golden: Some(row.golden.to_api()),
            tcp_connections: row.tcp,
        })
        .collect())
}

/// `Routes`: one row per route of `service`'s profile, then [`DEFAULT_ROUTE`]; routes seen in
/// traffic but gone from the profile come after.
pub fn routes(
    index: &Index,
    deltas: &[(Proxy, Delta)],
    service: &ServiceKey,
    from: Option<&Resource>,
) -> Vec<api::RouteRow> {
    let mut order: Vec<String> = index.route_names(service);
    order.push(DEFAULT_ROUTE.to_string());
    let mut rows: BTreeMap<String, Golden> = BTreeMap::new();
    for (proxy, delta) in deltas {
        if let Some(from) = from {
            let mut with_labels = proxy.clone();
            with_labels.labels = labels_of(proxy, delta);
            if !with_labels.is_of(from) {
                continue;
            }
        }
        for s in delta.responses.iter().filter(|s| {
            let dst = &s.labels().dst_labels;
            is(s, api::Direction::Outbound)
                && dst.get("service") == Some(&service.name)
                && dst.get("namespace") == Some(&service.namespace)
        }) {
            let route = match s.labels().route.as_str() {
                "" => DEFAULT_ROUTE.to_string(),
                r => r.to_string(),
            };
            if !order.contains(&route) {
                order.push(route.clone());
            }
            rows.entry(route).or_default().add(s, delta.elapsed);
        }
    }
    order
        .into_iter()
        .map(|route| api::RouteRow {
            golden: Some(rows.get(&route).map(Golden::to_api).unwrap_or_default()),
            route,
        })
        .collect()
}

/// `Edges`: one row per pair of resources of `kind` (deployment or pod) that talked in the
/// window, through their proxies, with the identities each side presented.
pub fn edges(
    deltas: &[(Proxy, Delta)],
    kind: Kind,
    namespace: Option<&str>,
) -> Result<Vec<api::EdgeRow>, String> {
    if !matches!(kind, Kind::Deployment | Kind::Pod) {
        return Err("edges are between deployments or pods".into());
    }
    type Key = ((String, String), (String, String), String, String, bool);
    let mut rows: BTreeMap<Key, Golden> = BTreeMap::new();
    for (proxy, delta) in deltas {
        let labels = labels_of(proxy, delta);
        let Some(src) = Resource::of(kind, &labels) else {
            continue;
        };
        let identity = match delta.latest.identity.as_str() {
            "" => proxy.identity.clone(),
            id => id.to_string(),
        };
        for s in delta
            .responses
            .iter()
            .filter(|s| is(s, api::Direction::Outbound))
        {
            let Some(dst) = Resource::of(kind, &dst_labels(s)) else {
                continue;
            };
            if namespace.is_some_and(|ns| src.0 != ns && dst.0 != ns) {
                continue;
            }
            let tls = s.labels().tls.clone().unwrap_or_default();
            let client_id = if tls.tls {
                identity.clone()
            } else {
                String::new()
            };
            let key = (src.clone(), dst, client_id, tls.server_id, tls.tls);
            rows.entry(key).or_default().add(s, delta.elapsed);
        }
    }
    Ok(rows
        .into_iter()
        .map(
            |((src, dst, client_id, server_id, secured), golden)| api::EdgeRow {
                src: Some(Resource::to_api(kind, &src.0, &src.1)),
                dst: Some(Resource::to_api(kind, &dst.0, &dst.1)),
                client_id,
                server_id,
                secured,
                golden: Some(golden.to_api()),
            },
        )
        .collect())
}
