//! The transport header: decoding any bytes never panics; a decoded header is no longer
//! than its bytes, names a port, and encodes back to the same port; bytes cut short are
//! incomplete or already refused, never a different header.
#![no_main]

use conduit_transport_header::{Decoded, TransportHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(Decoded::Header(header, len)) = TransportHeader::decode(data) else {
        return;
    };
    assert!(len <= data.len());
    assert_ne!(header.port, 0);
    assert_eq!(
        TransportHeader::decode(&header.encode()).ok(),
        Some(Decoded::Header(header, 13))
    );
    for cut in 0..len {
        match TransportHeader::decode(&data[..cut]) {
            Ok(Decoded::Incomplete(need)) => assert!(need > cut),
            Ok(Decoded::Header(..)) => panic!("a header from {cut} of its {len} bytes"),
            Err(_) => panic!("a prefix of a header refused"),
        }
    }
});
