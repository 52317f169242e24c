/// What a connection's first bytes say about TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientHello {
    /// Not a TLS ClientHello.
    NotTls,
    /// A complete ClientHello, with the server name it asks for, if any.
    Tls {
        /// The SNI.
        server_name: Option<String>,
    },
}

/// A TLS handshake record: content type 22, major version 3.
const HANDSHAKE: u8 = 0x16;

/// Reads the ClientHello from the bytes seen so far: `None` until it is complete. The record
/// layer and the hello are parsed by rustls, not by hand; a hello rustls cannot parse is
/// reported as not TLS, so the connection is carried as opaque bytes for its own server to
/// judge.
pub fn client_hello(buf: &[u8]) -> Option<ClientHello> {
    match buf {
        [] => return None,
        [first, ..] if *first != HANDSHAKE => return Some(ClientHello::NotTls),
        [_] => return None,
        [_, major, ..] if *major != 3 => return Some(ClientHello::NotTls),
        _ => {}
    }
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rest = buf;
    while !rest.is_empty() {
        match acceptor.read_tls(&mut rest) {
            Ok(0) => break,
            Ok(_) => {}
            // More than rustls buffers before a hello: not a hello we can read.
            Err(_) => return Some(ClientHello::NotTls),
        }
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => Some(ClientHello::Tls {
            server_name: accepted.client_hello().server_name().map(str::to_owned),
        }),
        Ok(None) => None,
        Err(_) => Some(ClientHello::NotTls),
    }
}
