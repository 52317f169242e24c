//! Authority parsing never panics, and what it accepts prints back to something that parses
//! to the same address.
#![no_main]

use conduit_addr::Addr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    for default in [None, Some(80)] {
        if let Ok(addr) = Addr::from_authority_with_default_port(s, default) {
            let printed = addr.to_string();
            let again: Addr = printed.parse().expect("a printed address parses");
            assert_eq!(again, addr);
            assert_ne!(addr.port(), 0);
        }
    }
});
