//! The CLI's Prometheus text reader never panics on any input, and the golden metrics it
//! derives stay within bounds.
#![no_main]

use conduit_app_cli::stats::{parse, Golden};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let samples = parse(text);
    let g = Golden::from_samples(&samples, "inbound");
    for q in [0.5, 0.99] {
        let _ = g.quantile(q);
    }
    let _ = g.since(&Golden::default());
});
