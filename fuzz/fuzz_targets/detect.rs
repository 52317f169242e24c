//! Protocol detection never panics, and its answers are consistent: a decision made on a
//! prefix holds for every longer input, and HTTP/2 means exactly the preface.
#![no_main]

use conduit_detect::{detect, Detection, Http, H2_PREFACE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = detect(data);
    if whole == Detection::Http(Http::H2) {
        assert!(data.starts_with(H2_PREFACE));
    }
    if data.starts_with(H2_PREFACE) {
        assert_eq!(whole, Detection::Http(Http::H2));
    }
    // Once decided, more bytes never change the decision.
    for cut in [1, data.len() / 2, data.len().saturating_sub(1)] {
        if cut == 0 || cut > data.len() {
            continue;
        }
        match detect(&data[..cut]) {
            Detection::NeedMore => {}
            decided => assert_eq!(decided, whole, "prefix of {cut} bytes decided differently"),
        }
    }
});
