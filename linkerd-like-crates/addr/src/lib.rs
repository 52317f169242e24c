//! Authorities and addresses.
//!
//! A client names its destination either by a logical name (`books.default.svc.cluster.local:8080`)
//! or by a socket address (`10.1.2.3:8080`). [`Addr`] holds one or the other. Parsing goes
//! through `http`'s authority parser, so the proxy accepts exactly what its HTTP stack accepts;
//! on top of that, a name must be a valid DNS name (RFC 1123 labels) and is kept lowercase
//! without its trailing dot, so `Books.Default.` and `books.default` are one target.

#![forbid(unsafe_code)]

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Why an authority could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// Not an authority at all.
    #[error("invalid authority: {0}")]
    Authority(String),
    /// No port, and no default was given.
    #[error("authority has no port")]
    MissingPort,
    /// Port 0 cannot be connected to.
    #[error("authority has port 0")]
    ZeroPort,
    /// The host is neither an IP address nor a DNS name.
    #[error("invalid DNS name: {0}")]
    Name(String),
    /// User information (`user@host`) has no place in a destination.
    #[error("authority must not carry user information")]
    UserInfo,
}

/// A DNS name, lowercase and without a trailing dot.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

/// A DNS name and a port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NameAddr {
    name: Name,
    port: u16,
}

/// A destination: a name with a port, or a socket address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Addr {
    /// A logical name, resolved later.
    Name(NameAddr),
    /// A concrete address.
    Socket(SocketAddr),
}

impl Name {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True if the name is `suffix` or ends with `.suffix`.
    pub fn is_within(&self, suffix: &str) -> bool {
        let suffix = suffix.trim_end_matches('.');
        self.0 == suffix
            || (self.0.ends_with(suffix)
                && self.0.as_bytes()[self.0.len() - suffix.len() - 1] == b'.')
    }
}

impl FromStr for Name {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        let trimmed = s.strip_suffix('.').unwrap_or(s);
        let bad = || Invalid::Name(s.to_string());
        if trimmed.is_empty() || trimmed.len() > 253 {
            return Err(bad());
        }
        for label in trimmed.split('.') {
            let ok_len = !label.is_empty() && label.len() <= 63;
            let ok_chars = label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            let ok_ends = !label.starts_with('-') && !label.ends_with('-');
            if !(ok_len && ok_chars && ok_ends) {
                return Err(bad());
            }
        }
        Ok(Name(trimmed.to_ascii_lowercase()))
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl NameAddr {
    /// A name with a port.
    pub fn new(name: Name, port: u16) -> Self {
        Self { name, port }
    }

    /// The name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.port)
    }
}

impl Addr {
    /// Parses `host:port`, using `default_port` when the authority has none.
    pub fn from_authority_with_default_port(
        authority: &str,
        default_port: Option<u16>,
    ) -> Result<Self, Invalid> {
        let parsed = http::uri::Authority::from_str(authority)
            .map_err(|_| Invalid::Authority(authority.to_string()))?;
        Self::from_http_authority(&parsed, default_port)
    }

    /// Converts an authority already parsed by `http`.
    pub fn from_http_authority(
        authority: &http::uri::Authority,
        default_port: Option<u16>,
    ) -> Result<Self, Invalid> {
        if authority.as_str().contains('@') {
            return Err(Invalid::UserInfo);
        }
        let port = authority
            .port_u16()
            .or(default_port)
            .ok_or(Invalid::MissingPort)?;
        if port == 0 {
            return Err(Invalid::ZeroPort);
        }
        let host = authority.host();
        // A trailing dot is a fully-qualified name's, and `1.2.3.4.` is still an address.
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or_else(|| host.strip_suffix('.').unwrap_or(host));
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Addr::Socket(SocketAddr::new(ip, port)));
        }
        if host.starts_with('[') {
            return Err(Invalid::Authority(authority.to_string()));
        }
        Ok(Addr::Name(NameAddr::new(host.parse()?, port)))
    }

    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            Addr::Name(n) => n.port(),
            Addr::Socket(s) => s.port(),
        }
    }

    /// The name, if this is a name.
    pub fn name_addr(&self) -> Option<&NameAddr> {
        match self {
            Addr::Name(n) => Some(n),
            Addr::Socket(_) => None,
        }
    }

    /// The socket address, if this is one.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Addr::Name(_) => None,
            Addr::Socket(s) => Some(*s),
        }
    }
}

impl FromStr for Addr {
    type Err = Invalid;

    /// Parses `host:port`; the port is required.
    fn from_str(s: &str) -> Result<Self, Invalid> {
        Self::from_authority_with_default_port(s, None)
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Name(n) => n.fmt(f),
            Addr::Socket(s) => s.fmt(f),
        }
    }
}

impl From<SocketAddr> for Addr {
    fn from(sa: SocketAddr) -> Self {
        Addr::Socket(sa)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_normalizes_them() {
        let addr: Addr = "Books.Default.svc.cluster.local.:8080".parse().unwrap();
        assert_eq!(addr.to_string(), "books.default.svc.cluster.local:8080");
        assert_eq!(addr.port(), 8080);
        assert!(addr.name_addr().is_some());
    }

    #[test]
    fn parses_socket_addresses() {
        let v4: Addr = "10.1.2.3:80".parse().unwrap();
        assert_eq!(v4.socket_addr(), Some("10.1.2.3:80".parse().unwrap()));
        let v6: Addr = "[::1]:443".parse().unwrap();
        assert_eq!(v6.socket_addr(), Some("[::1]:443".parse().unwrap()));
    }

    #[test]
    fn dotted_addresses_are_addresses() {
        // Found by fuzzing: printed back, a "name" 3.3.1.3 would parse as an address.
        let a: Addr = "3.3.1.3.:80".parse().unwrap();
        assert_eq!(a.socket_addr(), Some("3.3.1.3:80".parse().unwrap()));
    }

    #[test]
    fn default_port_applies_only_when_missing() {
        let a = Addr::from_authority_with_default_port("web", Some(80)).unwrap();
        assert_eq!(a.to_string(), "web:80");
        let b = Addr::from_authority_with_default_port("web:81", Some(80)).unwrap();
        assert_eq!(b.port(), 81);
    }

    #[test]
    fn rejects_bad_authorities() {
        assert_eq!("web".parse::<Addr>(), Err(Invalid::MissingPort));
        assert_eq!("web:0".parse::<Addr>(), Err(Invalid::ZeroPort));
        assert!(matches!(
            "we b:80".parse::<Addr>(),
            Err(Invalid::Authority(_))
        ));
        assert!(matches!("-web:80".parse::<Addr>(), Err(Invalid::Name(_))));
        assert!(matches!("a..b:80".parse::<Addr>(), Err(Invalid::Name(_))));
        assert_eq!("user@web:80".parse::<Addr>(), Err(Invalid::UserInfo));
        assert!("web:99999".parse::<Addr>().is_err());
        assert!("".parse::<Addr>().is_err());
        assert!("[zz]:80".parse::<Addr>().is_err());
    }

    #[test]
    fn suffix_matching_respects_label_boundaries() {
        let n: Name = "books.default.svc.cluster.local".parse().unwrap();
        assert!(n.is_within("cluster.local"));
        assert!(n.is_within("cluster.local."));
        assert!(!n.is_within("ster.local"));
        assert!(n.is_within("books.default.svc.cluster.local"));
    }
}
