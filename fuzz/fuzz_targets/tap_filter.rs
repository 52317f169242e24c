//! Tap filter matching: any filter a client could send is read without panicking (or
//! refused with a reason), and evaluating it over any request never panics. A filter judged
//! over complete facts is never unknown, and a filter judged with some facts missing agrees
//! with the complete judgement whenever it is not unknown (three-valued logic is sound).
#![no_main]

use conduit_api::tap as api;
use conduit_tap::{Facts, Labels, Match, Truth};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<12>() else {
        return;
    };
    let (text, wire) = rest.split_at(rest.len().min(usize::from(head[11])));
    let Ok(m) = api::Match::decode(wire) else {
        return;
    };
    let Ok(filter) = Match::from_api(Some(m)) else {
        return;
    };
    let text = String::from_utf8_lossy(text);
    let mut parts = text.splitn(4, '\n');
    let authority = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    let route = parts.next().unwrap_or_default();
    let label = parts.next().unwrap_or_default();
    let ip = |o: usize| IpAddr::V4(Ipv4Addr::new(head[o], head[o + 1], head[o + 2], head[o + 3]));
    let source = SocketAddr::new(ip(0), u16::from_be_bytes([head[8], head[9]]));
    let destination = SocketAddr::new(ip(4), u16::from(head[10]));
    let labels = Labels::from([("deployment".to_string(), label.to_string())]);
    let method = http::Method::GET;
    let complete = Facts {
        source,
        destination,
        method: &method,
        authority: Some(authority),
        path,
        source_labels: Some(&labels),
        destination_labels: Some(&labels),
        route: Some(Some(route).filter(|r| !r.is_empty())),
    };
    let full = filter.eval(&complete);
    assert_ne!(full, Truth::Unknown);
    let partial = Facts {
        destination_labels: None,
        route: None,
        ..complete
    };
    let early = filter.eval(&partial);
    assert!(early == Truth::Unknown || early == full, "{early:?} then {full:?}");
});
