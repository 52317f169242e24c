//! Identity names: parsing never panics; what parses is a DNS-like name that round-trips,
//! and a workload read out of a name names it again.
#![no_main]

use conduit_identity::{Domain, Name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(name) = Name::parse(text) {
        assert_eq!(name.as_str(), text);
        assert!(name.as_str().len() <= 253);
        assert!(name
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'));
        let domain = Domain::default();
        if let Some(workload) = domain.workload(&name) {
            assert_eq!(domain.name(&workload).as_ref(), Ok(&name));
        }
    }
    let _ = conduit_policy::parse_suffix(text);
    let _ = conduit_policy::parse_net(text);
});
