//! The controller's stats windows never panic or blow up on whatever proxies answer: two
//! answers (any bytes that decode), their difference, and the merged golden figures.
#![no_main]

use conduit_api::stats::ProxySnapshot;
use conduit_control_viz::query::Golden;
use conduit_control_viz::window::History;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let (a, b) = rest.split_at((split as usize).min(rest.len()));
    let (Ok(first), Ok(second)) = (ProxySnapshot::decode(a), ProxySnapshot::decode(b)) else {
        return;
    };
    let t0 = tokio::time::Instant::now();
    let mut history = History::default();
    history.push(t0, first, Duration::from_secs(600));
    history.push(t0 + Duration::from_secs(5), second, Duration::from_secs(600));
    let Some(delta) = history.delta(Duration::from_secs(60)) else { return };
    let mut golden = Golden::default();
    for series in &delta.responses {
        golden.add(series, delta.elapsed);
    }
    let g = golden.to_api();
    assert!(g.successes <= g.requests);
    assert!(g.p50_us <= g.p95_us && g.p95_us <= g.p99_us);
});
