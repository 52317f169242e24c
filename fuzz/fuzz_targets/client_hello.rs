//! The ClientHello/SNI reader never panics, and never changes its mind: once a prefix of the
//! bytes decides, the whole decides the same.
#![no_main]

use conduit_tls::client_hello;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = client_hello(data);
    if data.is_empty() {
        return;
    }
    let split = usize::from(data[0]) % data.len();
    if let Some(early) = client_hello(&data[..split]) {
        assert_eq!(Some(early), whole, "decided at {split} bytes, then changed");
    }
});
