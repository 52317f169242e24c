//! The APIs' answers as JSON documents: what `conduit stat -o json` (and `routes`, `edges`,
//! `tap`) print, and what the dashboard's `/api/*` serve, from one piece of code.

use conduit_api::stats::{EdgesResponse, Golden, RoutesResponse, StatResponse};
use conduit_api::tap::tap_event::{response_end::End, Direction, Event, Peer};
use conduit_api::tap::{Resource, TapEvent};
use serde_json::{json, Map, Value};
use std::time::Duration;

fn seconds(d: Option<prost_types::Duration>) -> f64 {
    d.and_then(|d| Duration::try_from(d).ok())
        .unwrap_or_default()
        .as_secs_f64()
}

/// A wire duration in microseconds (0 when absent or negative).
pub fn micros(d: Option<prost_types::Duration>) -> u64 {
    d.and_then(|d| Duration::try_from(d).ok())
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A row's golden figures: counts, rate, success rate and percentiles in milliseconds
/// (`null` without requests).
pub fn golden(g: Option<&Golden>) -> Map<String, Value> {
    let g = g.copied().unwrap_or_default();
    let some = |v: Value| if g.requests > 0 { v } else { Value::Null };
    let mut m = Map::new();
    m.insert("requests".into(), json!(g.requests));
    m.insert("successes".into(), json!(g.successes));
    m.insert(
        "success_rate".into(),
        some(json!(g.successes as f64 / g.requests.max(1) as f64)),
    );
    m.insert("rps".into(), json!(g.rps));
    for (name, us) in [
        ("latency_ms_p50", g.p50_us),
        ("latency_ms_p95", g.p95_us),
        ("latency_ms_p99", g.p99_us),
    ] {
        m.insert(name.into(), some(json!(us as f64 / 1000.0)));
    }
    m
}

fn resource(r: Option<&Resource>) -> Value {
    let r = r.cloned().unwrap_or_default();
    json!({ "namespace": r.namespace, "kind": r.kind, "name": r.name })
}

fn with_golden(mut row: Value, g: Option<&Golden>) -> Value {
    if let Some(obj) = row.as_object_mut() {
        obj.extend(golden(g));
    }
    row
}

/// `Stat`'s answer.
pub fn stat(rsp: &StatResponse) -> Value {
    let rows: Vec<Value> = rsp
        .rows
        .iter()
        .map(|row| {
            let r = row.resource.clone().unwrap_or_default();
            with_golden(
                json!({
                    "namespace": r.namespace,
                    "kind": r.kind,
                    "name": r.name,
                    "meshed": row.meshed,
                    "pods": row.pods,
                    "tcp_connections": row.tcp_connections,
                }),
                row.golden.as_ref(),
            )
        })
        .collect();
    json!({ "window_seconds": seconds(rsp.window), "rows": rows })
}

/// `Routes`' answer for `service` (`svc/books`).
pub fn routes(rsp: &RoutesResponse, service: &str) -> Value {
    let rows: Vec<Value> = rsp
        .rows
        .iter()
        .map(|row| {
            with_golden(
                json!({ "route": row.route, "service": service }),
                row.golden.as_ref(),
            )
        })
        .collect();
    json!({ "window_seconds": seconds(rsp.window), "rows": rows })
}

/// `Edges`' answer.
pub fn edges(rsp: &EdgesResponse) -> Value {
    let rows: Vec<Value> = rsp
        .rows
        .iter()
        .map(|row| {
            with_golden(
                json!({
                    "src": resource(row.src.as_ref()),
                    "dst": resource(row.dst.as_ref()),
                    "client_id": row.client_id,
                    "server_id": row.server_id,
                    "secured": row.secured,
                }),
                row.golden.as_ref(),
            )
        })
        .collect();
    json!({ "window_seconds": seconds(rsp.window), "rows": rows })
}

/// `in`, `out` or `-`: which side of its proxy a tap event is from.
pub fn direction(e: &TapEvent) -> &'static str {
    match Direction::try_from(e.proxy_direction) {
        Ok(Direction::Inbound) => "in",
        Ok(Direction::Outbound) => "out",
        _ => "-",
    }
}

/// One tap event.
pub fn tap_event(e: &TapEvent) -> Value {
    let peer = |p: Option<&Peer>| {
        p.map_or(
            Value::Null,
            |p| json!({ "addr": p.addr, "identity": p.identity, "labels": p.labels }),
        )
    };
    let event = match &e.event {
        Some(Event::RequestInit(r)) => json!({
            "type": "request_init", "id": r.id, "method": r.method, "scheme": r.scheme,
            "authority": r.authority, "path": r.path,
        }),
        Some(Event::ResponseInit(r)) => json!({
            "type": "response_init", "id": r.id, "http_status": r.http_status,
            "latency_us": micros(r.since_request_init),
        }),
        Some(Event::ResponseEnd(r)) => {
            let mut v = json!({
                "type": "response_end", "id": r.id,
                "duration_us": micros(r.since_response_init),
                "total_us": micros(r.since_request_init),
                "response_bytes": r.response_bytes,
            });
            match &r.end {
                Some(End::GrpcStatus(code)) => v["grpc_status"] = json!(code),
                Some(End::Error(err)) => v["error"] = json!(err),
                None => {}
            }
            v
        }
        None => Value::Null,
    };
    json!({
        "proxy": e.proxy,
        "direction": direction(e),
        "source": peer(e.source.as_ref()),
        "destination": peer(e.destination.as_ref()),
        "tls": e.tls,
        "route": e.route,
        "event": event,
    })
}
