//! Hop-by-hop headers (RFC 9110 §7.6.1).
//!
//! An intermediary must not forward the headers that describe one connection: `Connection`
//! itself, every header it lists, and the well-known ones (`Keep-Alive`, `Proxy-Connection`,
//! `TE`, `Transfer-Encoding`, `Upgrade`, `Proxy-Authenticate`, `Proxy-Authorization`). Two
//! exceptions keep protocols working end to end: `TE: trailers`, which gRPC requires over
//! HTTP/2, and `Connection: upgrade` with `Upgrade` when a WebSocket or other upgrade is being
//! carried through.

use http::header::{self, HeaderMap, HeaderName};

const HOPS: usize = 8;

/// Every header that is hop-by-hop by definition.
static HOP_BY_HOP: [HeaderName; HOPS] = [
    header::CONNECTION,
    header::UPGRADE,
    header::TE,
    header::TRANSFER_ENCODING,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// The position of `name` in [`HOP_BY_HOP`]: a string match compiles to a length switch and
/// one comparison, cheaper than comparing against each `HeaderName` in turn.
fn hop_index(name: &str) -> Option<usize> {
    match name {
        "connection" => Some(0),
        "upgrade" => Some(1),
        "te" => Some(2),
        "transfer-encoding" => Some(3),
        "proxy-authenticate" => Some(4),
        "proxy-authorization" => Some(5),
        "keep-alive" => Some(6),
        "proxy-connection" => Some(7),
        _ => None,
    }
}

/// Removes hop-by-hop headers; keeps `Connection: upgrade` and `Upgrade` when `upgrading`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrading: bool) {
    // One pass over the names finds which are present (most messages carry none, or just
    // `Connection: keep-alive`); only those are removed, and nothing is allocated unless
    // `Connection` lists a header of its own.
    let mut present = [false; HOPS];
    for name in headers.keys() {
        if let Some(i) = hop_index(name.as_str()) {
            present[i] = true;
        }
    }
    if !upgrading && !present.contains(&true) {
        return;
    }
    let mut listed: Vec<HeaderName> = Vec::new();
    if present[0] {
        let tokens = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter(|v| !is_plain_connection_option(v.as_bytes()))
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim);
        for token in tokens {
            let known = ["close", "upgrade"]
                .iter()
                .any(|k| token.eq_ignore_ascii_case(k))
                || HOP_BY_HOP
                    .iter()
                    .any(|h| token.eq_ignore_ascii_case(h.as_str()));
            if !known {
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    listed.push(name);
                }
            }
        }
    }
    let te_trailers = present[2]
        && headers
            .get(header::TE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for name in listed {
        headers.remove(name);
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p) {
        let keep = (upgrading && *name == header::UPGRADE) || (te_trailers && *name == header::TE);
        if !keep {
            headers.remove(name);
        }
    }
    if upgrading {
        headers.insert(
            header::CONNECTION,
            header::HeaderValue::from_static("upgrade"),
        );
    }
}

/// `Connection: keep-alive` and `Connection: close`, nearly every message's, name no header.
fn is_plain_connection_option(value: &[u8]) -> bool {
    value.eq_ignore_ascii_case(b"keep-alive") || value.eq_ignore_ascii_case(b"close")
}

/// True for an HTTP/1.1 request asking to switch protocols (`Connection: upgrade` + `Upgrade`).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn strips_listed_and_known_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, x-hop"),
            ("keep-alive", "timeout=5"),
            ("x-hop", "1"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-end-to-end", "kept"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-end-to-end"], "kept");
    }

    #[test]
    fn hop_indices_agree_with_the_table() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_index(name.as_str()), Some(i));
        }
        assert_eq!(hop_index("content-type"), None);
    }

    #[test]
    fn keeps_te_trailers_for_grpc() {
        let mut h = map(&[("te", "trailers")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn keeps_upgrade_headers_when_upgrading() {
        let mut h = map(&[
            ("connection", "Upgrade, x-hop"),
            ("upgrade", "websocket"),
            ("x-hop", "1"),
        ]);
        assert!(wants_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert!(!h.contains_key("x-hop"));
    }

    #[test]
    fn upgrade_needs_both_headers() {
        assert!(!wants_upgrade(&map(&[("upgrade", "websocket")])));
        assert!(!wants_upgrade(&map(&[("connection", "upgrade")])));
    }
}
