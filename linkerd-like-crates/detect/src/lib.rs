//! Protocol detection.
//!
//! A transparent proxy receives connections without being told what they carry. It reads the
//! first bytes and decides:
//!
//! - **HTTP/2** with prior knowledge when the bytes are the client connection preface
//!   `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n` (RFC 9113 §3.4);
//! - **HTTP/1** when they form a valid request line ending in `HTTP/1.0` or `HTTP/1.1`, as judged
//!   by `httparse`, the parser hyper itself uses, so detection never accepts what the server
//!   will then refuse;
//! - **opaque** otherwise: a TLS ClientHello, a database protocol, anything else.
//!
//! [`detect`] is the pure decision on a buffer; [`detect_io`] reads from a stream until a
//! decision is possible, bounded by a byte limit and a timeout. A client that says nothing
//! before the timeout, or more than the limit without a decision, is carried as opaque TCP
//! (which is also what a server-speaks-first protocol needs, though for those the proxy skips
//! detection entirely by port). The bytes read are never lost: they come back inside a
//! [`PrefixedIo`].

#![forbid(unsafe_code)]

use bytes::BytesMut;
use conduit_io::PrefixedIo;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The HTTP/2 client connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An HTTP version the proxy can serve.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Http {
    /// HTTP/1.0 or HTTP/1.1.
    Http1,
    /// HTTP/2 with prior knowledge.
    H2,
}

/// What the bytes seen so far say.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Detection {
    /// The connection speaks this HTTP version.
    Http(Http),
    /// The connection is not HTTP.
    Opaque,
    /// The bytes so far could still be either.
    NeedMore,
}

/// Decides on the first bytes of a connection.
pub fn detect(buf: &[u8]) -> Detection {
    if buf.is_empty() {
        return Detection::NeedMore;
    }
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return if n == H2_PREFACE.len() {
            Detection::Http(Http::H2)
        } else {
            Detection::NeedMore
        };
    }
    // Only the complete request line decides: header syntax is the server's to judge (and
    // answer), and deciding on a partial line could be contradicted by its next byte.
    let (line, complete) = match buf.iter().position(|&b| b == b'\n') {
        Some(end) => (&buf[..=end], true),
        None => (buf, false),
    };
    let mut no_headers = [];
    let mut req = httparse::Request::new(&mut no_headers);
    match req.parse(line) {
        Err(_) => Detection::Opaque,
        Ok(_) if complete && req.version.is_some() => Detection::Http(Http::Http1),
        Ok(_) if complete => Detection::Opaque,
        Ok(_) => Detection::NeedMore,
    }
}

/// Bounds on detection.
#[derive(Copy, Clone, Debug)]
pub struct Config {
    /// How long to wait for enough bytes.
    pub timeout: Duration,
    /// How many bytes to read at most before giving up on HTTP.
    pub max_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_bytes: 8 * 1024,
        }
    }
}

/// Reads from `io` until the protocol is known; returns it (`None` for opaque) with a stream
/// that replays every byte read.
pub async fn detect_io<I>(io: I, config: Config) -> std::io::Result<(Option<Http>, PrefixedIo<I>)>
where
    I: AsyncRead + Unpin,
{
    read_until(io, config, |buf| match detect(buf) {
        Detection::Http(http) => Some(Some(http)),
        Detection::Opaque => Some(None),
        Detection::NeedMore => None,
    })
    .await
    .map(|(found, io)| (found.flatten(), io))
}

/// Reads from `io` until `decide` returns `Some` on the bytes read so far, within `config`'s
/// time and byte bounds (`None` when they run out, or at end of stream). Every byte read is
/// replayed by the returned stream. HTTP detection and TLS ClientHello detection share it.
pub async fn read_until<I, T>(
    mut io: I,
    config: Config,
    mut decide: impl FnMut(&[u8]) -> Option<T>,
) -> std::io::Result<(Option<T>, PrefixedIo<I>)>
where
    I: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(config.max_bytes.min(1024));
    let deadline = tokio::time::Instant::now() + config.timeout;
    let found = loop {
        if buf.len() >= config.max_bytes {
            break None;
        }
        let want = (config.max_bytes - buf.len()).min(4096);
        buf.reserve(want);
        let mut limited = (&mut io).take(want as u64);
        let read = tokio::time::timeout_at(deadline, limited.read_buf(&mut buf)).await;
        match read {
            Err(_elapsed) => break None,
            Ok(Err(e)) => return Err(e),
            Ok(Ok(0)) => break None,
            Ok(Ok(_)) => {
                if let Some(found) = decide(&buf) {
                    break Some(found);
                }
            }
        }
    };
    Ok((found, PrefixedIo::new(buf.freeze(), io)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn http1_request_lines() {
        assert_eq!(detect(b"GET / HTTP/1.1\r\n"), Detection::Http(Http::Http1));
        assert_eq!(
            detect(b"POST /x HTTP/1.0\r\nHost: a\r\n"),
            Detection::Http(Http::Http1)
        );
        assert_eq!(
            detect(b"GET / HTTP/1.1\r\n\r\n"),
            Detection::Http(Http::Http1)
        );
        assert_eq!(
            detect(b"CONNECT a:443 HTTP/1.1\r\n"),
            Detection::Http(Http::Http1)
        );
        // Bad headers are the server's to refuse with a 400, not a reason to go opaque.
        assert_eq!(
            detect(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"),
            Detection::Http(Http::Http1)
        );
    }

    #[test]
    fn partial_request_lines_need_more() {
        assert_eq!(detect(b"GE"), Detection::NeedMore);
        assert_eq!(detect(b"GET /long/pa"), Detection::NeedMore);
        assert_eq!(detect(b"GET / HTTP/1."), Detection::NeedMore);
        // Found by fuzzing: a line is only HTTP once it ends.
        assert_eq!(detect(b"YPRI * HTTP/1.0\r"), Detection::NeedMore);
        assert_eq!(detect(b"YPRI * HTTP/1.0\r\xf7"), Detection::Opaque);
    }

    #[test]
    fn h2_preface_and_its_prefixes() {
        assert_eq!(detect(H2_PREFACE), Detection::Http(Http::H2));
        let mut more = H2_PREFACE.to_vec();
        more.extend_from_slice(&[0, 0, 0, 4]);
        assert_eq!(detect(&more), Detection::Http(Http::H2));
        assert_eq!(detect(&H2_PREFACE[..10]), Detection::NeedMore);
        assert_eq!(detect(b"PRI * HTTP/2.0\r\n\r\nXX"), Detection::Opaque);
    }

    #[test]
    fn other_protocols_are_opaque() {
        // A TLS ClientHello record header.
        assert_eq!(detect(&[0x16, 0x03, 0x01, 0x00, 0xc8]), Detection::Opaque);
        assert_eq!(detect(b"SSH-2.0-OpenSSH_9.2\r\n"), Detection::Opaque);
        assert_eq!(detect(b"\0\0\0\0"), Detection::Opaque);
        assert_eq!(detect(b"GET / FTP/1.1\r\n"), Detection::Opaque);
    }

    #[tokio::test]
    async fn reads_in_pieces_and_replays_everything() {
        let (mut client, server) = tokio::io::duplex(1024);
        let task = tokio::spawn(detect_io(server, Config::default()));
        client.write_all(b"GET /a").await.unwrap();
        tokio::task::yield_now().await;
        client
            .write_all(b" HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (found, io) = task.await.unwrap().unwrap();
        assert_eq!(found, Some(Http::Http1));
        assert!(io.prefix().starts_with(b"GET /a HTTP/1.1\r\n"));
    }

    #[tokio::test(start_paused = true)]
    async fn silence_times_out_as_opaque() {
        let (_client, server) = tokio::io::duplex(1024);
        let config = Config {
            timeout: Duration::from_secs(10),
            max_bytes: 8192,
        };
        let (found, io) = detect_io(server, config).await.unwrap();
        assert_eq!(found, None);
        assert!(io.prefix().is_empty());
    }

    #[tokio::test]
    async fn the_byte_limit_stops_detection() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        // A request line that never ends.
        let mut line = b"GET /".to_vec();
        line.resize(10_000, b'a');
        client.write_all(&line).await.unwrap();
        let config = Config {
            timeout: Duration::from_secs(10),
            max_bytes: 8192,
        };
        let (found, io) = detect_io(server, config).await.unwrap();
        assert_eq!(found, None);
        assert_eq!(io.prefix().len(), 8192);
    }

    #[tokio::test]
    async fn eof_before_a_decision_is_opaque() {
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(b"GE").await.unwrap();
        drop(client);
        let (found, io) = detect_io(server, Config::default()).await.unwrap();
        assert_eq!(found, None);
        assert_eq!(io.prefix().as_ref(), b"GE");
    }
}
