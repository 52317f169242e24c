//! The transport header: how a proxy tells another which port opaque TCP is for.
//!
//! A meshed workload's opaque TCP cannot reach the peer's proxy on the application's own
//! port. On a port configured opaque (a server-speaks-first protocol such as MySQL or SMTP),
//! the inbound proxy never waits for a client's first bytes, so it can never see a TLS
//! ClientHello there. So, as linkerd2-proxy does, the client's proxy connects to the peer
//! proxy's inbound port itself, completes mTLS with ALPN `conduit.io/transport.v1`, and
//! writes this header first; the inbound proxy reads it, authorizes the client's identity
//! against the named port's policy, and carries the rest of the bytes to that port on the
//! workload.
//!
//! The header is binary and small:
//!
//! ```text
//! "CONDUIT\n"  8 bytes  prefix, never the start of HTTP or TLS
//! version      1 byte   1
//! length       2 bytes  big-endian length of the body, 2..=256
//! body:
//!   port       2 bytes  big-endian target port, not 0
//!   ...                 fields a later version adds, skipped by this one
//! ```
//!
//! The body's length is bounded so a peer cannot make the reader buffer without limit, and
//! the reader reads exactly the header's bytes, never into the data after it.

#![forbid(unsafe_code)]

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The first bytes of every header.
pub const PREFIX: &[u8; 8] = b"CONDUIT\n";
/// The version this crate writes and reads.
pub const VERSION: u8 = 1;
/// The largest body a reader accepts.
pub const MAX_BODY: u16 = 256;
/// Prefix, version and length.
const FIXED: usize = PREFIX.len() + 3;

/// Which port on the peer's workload a connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransportHeader {
    /// The target port; never 0.
    pub port: u16,
}

/// A header that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The connection failed or closed before the whole header came.
    #[error("reading the transport header: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a transport header.
    #[error("not a transport header")]
    NotAHeader,
    /// A version this proxy does not know.
    #[error("transport header version {0} is not supported")]
    Version(u8),
    /// The body is shorter than a port or longer than [`MAX_BODY`].
    #[error("transport header body of {0} bytes: must be 2 to {MAX_BODY}")]
    Length(u16),
    /// Port 0 names nothing.
    #[error("transport header names port 0")]
    ZeroPort,
}

/// What [`TransportHeader::decode`] found at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole header, `len` bytes long.
    Header(TransportHeader, usize),
    /// Nothing wrong yet; at least this many bytes are needed in all.
    Incomplete(usize),
}

impl TransportHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; FIXED + 2] {
        let mut out = [0u8; FIXED + 2];
        out[..PREFIX.len()].copy_from_slice(PREFIX);
        out[PREFIX.len()] = VERSION;
        out[PREFIX.len() + 1..FIXED].copy_from_slice(&2u16.to_be_bytes());
        out[FIXED..].copy_from_slice(&self.port.to_be_bytes());
        out
    }

    /// Decodes a header at the start of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Decoded, HeaderError> {
        // A wrong prefix is refused as soon as one byte differs.
        let seen = buf.len().min(PREFIX.len());
        if buf[..seen] != PREFIX[..seen] {
            return Err(HeaderError::NotAHeader);
        }
        if buf.len() < FIXED {
            return Ok(Decoded::Incomplete(FIXED));
        }
        let version = buf[PREFIX.len()];
        if version != VERSION {
            return Err(HeaderError::Version(version));
        }
        let len = u16::from_be_bytes([buf[PREFIX.len() + 1], buf[PREFIX.len() + 2]]);
        if !(2..=MAX_BODY).contains(&len) {
            return Err(HeaderError::Length(len));
        }
        let total = FIXED + usize::from(len);
        if buf.len() < total {
            return Ok(Decoded::Incomplete(total));
        }
        let port = u16::from_be_bytes([buf[FIXED], buf[FIXED + 1]]);
        if port == 0 {
            return Err(HeaderError::ZeroPort);
        }
        Ok(Decoded::Header(TransportHeader { port }, total))
    }

    /// Reads a header from the start of `io`, and not a byte more. Bound it in time: a peer
    /// that stops sending leaves this waiting.
    pub async fn read<I: AsyncRead + Unpin>(io: &mut I) -> Result<Self, HeaderError> {
        let mut buf = [0u8; FIXED + MAX_BODY as usize];
        let mut have = 0;
        loop {
            match Self::decode(&buf[..have])? {
                Decoded::Header(header, _) => return Ok(header),
                Decoded::Incomplete(need) => {
                    // The prefix is checked as it arrives; the body is read in one go.
                    let want = if have < PREFIX.len() { have + 1 } else { need };
                    io.read_exact(&mut buf[have..want]).await?;
                    have = want;
                }
            }
        }
    }

    /// Writes the header to `io`.
    pub async fn write<I: AsyncWrite + Unpin>(&self, io: &mut I) -> std::io::Result<()> {
        io.write_all(&self.encode()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips_and_names_its_length() {
        let h = TransportHeader { port: 5432 };
        let bytes = h.encode();
        assert_eq!(&bytes[..8], b"CONDUIT\n");
        assert_eq!(
            TransportHeader::decode(&bytes).unwrap(),
            Decoded::Header(h, 13)
        );
        for cut in 0..bytes.len() {
            assert!(
                matches!(
                    TransportHeader::decode(&bytes[..cut]).unwrap(),
                    Decoded::Incomplete(n) if n > cut
                ),
                "{cut}"
            );
        }
    }

    #[test]
    fn later_fields_are_skipped_and_bad_headers_refused() {
        let mut longer = TransportHeader { port: 80 }.encode().to_vec();
        longer[10] = 5;
        longer.extend_from_slice(b"new");
        longer.extend_from_slice(b"data after");
        assert_eq!(
            TransportHeader::decode(&longer).unwrap(),
            Decoded::Header(TransportHeader { port: 80 }, 16)
        );

        let err = |bytes: &[u8]| TransportHeader::decode(bytes).unwrap_err().to_string();
        assert_eq!(err(b"GET / HTTP/1.1\r\n"), "not a transport header");
        assert_eq!(err(b"\x16\x03\x01"), "not a transport header");
        let mut v2 = TransportHeader { port: 80 }.encode();
        v2[8] = 2;
        assert_eq!(err(&v2), "transport header version 2 is not supported");
        let mut huge = TransportHeader { port: 80 }.encode();
        huge[9..11].copy_from_slice(&1000u16.to_be_bytes());
        assert!(err(&huge).contains("1000 bytes"), "{}", err(&huge));
        let mut short = TransportHeader { port: 80 }.encode();
        short[10] = 1;
        assert!(err(&short).contains("1 bytes"));
        assert_eq!(
            err(&TransportHeader { port: 0 }.encode()),
            "transport header names port 0"
        );
    }

    #[tokio::test]
    async fn reading_takes_the_header_and_leaves_the_data() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let mut sent = TransportHeader { port: 3306 }.encode().to_vec();
        sent.extend_from_slice(b"payload");
        client.write_all(&sent).await.unwrap();
        drop(client);
        let header = TransportHeader::read(&mut server).await.unwrap();
        assert_eq!(header.port, 3306);
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"payload");
    }

    #[tokio::test]
    async fn reading_stops_at_the_first_wrong_byte_or_the_end() {
        let (mut client, mut server) = tokio::io::duplex(64);
        // Plaintext where a header belongs: refused at once, though the peer keeps the
        // connection open.
        client.write_all(b"HELLO").await.unwrap();
        let err = TransportHeader::read(&mut server).await.unwrap_err();
        assert!(matches!(err, HeaderError::NotAHeader), "{err}");

        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"CONDUIT\n\x01").await.unwrap();
        drop(client);
        let err = TransportHeader::read(&mut server).await.unwrap_err();
        assert!(matches!(err, HeaderError::Io(_)), "{err}");
    }
}
