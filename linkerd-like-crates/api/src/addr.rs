//! Socket addresses on the wire (`TcpAddress`: the IP's bytes and a port).

use crate::destination::TcpAddress;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a `TcpAddress` is not a socket address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidAddr(String);

impl std::fmt::Display for InvalidAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidAddr {}

impl From<SocketAddr> for TcpAddress {
    fn from(addr: SocketAddr) -> Self {
        let ip = match addr.ip() {
            IpAddr::V4(ip) => ip.octets().to_vec(),
            IpAddr::V6(ip) => ip.octets().to_vec(),
        };
        TcpAddress {
            ip,
            port: u32::from(addr.port()),
        }
    }
}

impl TryFrom<&TcpAddress> for SocketAddr {
    type Error = InvalidAddr;

    fn try_from(addr: &TcpAddress) -> Result<Self, InvalidAddr> {
        let port = u16::try_from(addr.port)
            .map_err(|_| InvalidAddr(format!("port {} is out of range", addr.port)))?;
        let ip = if let Ok(v4) = <[u8; 4]>::try_from(addr.ip.as_slice()) {
            IpAddr::V4(Ipv4Addr::from(v4))
        } else if let Ok(v6) = <[u8; 16]>::try_from(addr.ip.as_slice()) {
            IpAddr::V6(Ipv6Addr::from(v6))
        } else {
            return Err(InvalidAddr(format!(
                "an IP address has 4 or 16 bytes, not {}",
                addr.ip.len()
            )));
        };
        Ok(SocketAddr::new(ip, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        for addr in ["10.1.2.3:8080", "[fd00::1]:443", "0.0.0.0:0"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let wire = TcpAddress::from(addr);
            assert_eq!(SocketAddr::try_from(&wire), Ok(addr));
        }
    }

    #[test]
    fn malformed_addresses_are_refused_with_a_reason() {
        let short = TcpAddress {
            ip: vec![1, 2, 3],
            port: 80,
        };
        assert!(SocketAddr::try_from(&short)
            .unwrap_err()
            .to_string()
            .contains("4 or 16 bytes"));
        let big_port = TcpAddress {
            ip: vec![1, 2, 3, 4],
            port: 70_000,
        };
        assert!(SocketAddr::try_from(&big_port)
            .unwrap_err()
            .to_string()
            .contains("out of range"));
    }
}
