//! Opaque TCP: where it goes, and how it crosses between meshed proxies.
//!
//! Outbound, a connection to a service the controller knows is balanced per connection
//! over the service's endpoints (P2C over the same peak-EWMA pool as HTTP, the connection
//! held in flight while it is open, so the least-loaded endpoint gets the next one). An
//! endpoint whose proxy has an identity, when this proxy has one too, is reached over mTLS
//! with ALPN `conduit.io/transport.v1`: on its proxy's inbound port when discovery names it,
//! else on the endpoint's own address (where the peer's iptables hand it to its proxy); the
//! bytes start with a transport header naming the endpoint's port. Anything else is carried
//! in plaintext, as the application sent it.
//!
//! Inbound, a terminated connection that agreed on that ALPN gives its target port in the
//! header; [`TransportTarget`] says where that port is. A header naming one of the proxy's
//! own ports is refused: the admin server trusts loopback (`/shutdown`), and a connection
//! to its own listeners would loop.

use crate::connection::{Connection, Destination};
use crate::http_router::Route;
use conduit_addr::Addr;
use conduit_balance::Picked;
use conduit_http::Http;
use conduit_io::CountingIo;
use conduit_metrics::{Peer, TcpLabels, TlsLabel};
use conduit_tls::Name;
use conduit_transport_header::TransportHeader;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// Where opaque TCP that names its port in a transport header goes (the inbound side).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportTarget {
    /// The header's port on this host's loopback, of the same family as the connection,
    /// unless it is one of these: the proxy's own ports.
    Loopback {
        /// Ports refused: the proxy's listeners (inbound, outbound, admin, tap).
        proxy_ports: Arc<[u16]>,
    },
    /// This address, whatever port the header names: a proxy that fronts one application
    /// at its forward address sends it everything.
    Fixed(SocketAddr),
}

/// A transport header named one of the proxy's own ports.
#[derive(Debug, thiserror::Error)]
#[error("the transport header names port {0}, one of the proxy's own")]
pub struct ProxyPort(pub u16);

impl TransportTarget {
    /// Where a connection accepted on `local` whose header names `port` goes, and the
    /// address its metrics and policy know it by.
    pub fn resolve(
        &self,
        local: SocketAddr,
        port: u16,
    ) -> Result<(SocketAddr, SocketAddr), ProxyPort> {
        match self {
            TransportTarget::Fixed(addr) => Ok((*addr, *addr)),
            TransportTarget::Loopback { proxy_ports } => {
                if proxy_ports.contains(&port) {
                    return Err(ProxyPort(port));
                }
                let lo = loopback_for(local.ip());
                Ok((SocketAddr::new(lo, port), SocketAddr::new(local.ip(), port)))
            }
        }
    }
}

/// The loopback address of `ip`'s family: where the inbound side reaches the workload.
pub fn loopback_for(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}

/// One balanced endpoint for a TCP connection, and how to reach it.
struct Upstream {
    /// The endpoint's address (its port goes in the header).
    endpoint: SocketAddr,
    /// Where to connect: the endpoint, or its proxy's inbound port.
    connect: SocketAddr,
    /// Its proxy's identity, when the connection is mTLS.
    tls: Option<Name>,
    /// Held while the connection is open: the balancer counts it as in flight.
    picked: Option<Picked<SocketAddr, crate::balancer::Backend>>,
}

impl Connection {
    /// Carries opaque TCP from `io` to where `dst` says, until both sides close.
    pub(crate) async fn forward_tcp<I>(&self, io: I, dst: &Destination, addr: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(mut upstream) = self.tcp_upstream(dst, addr).await else {
            return;
        };
        let timeout = self.config().client.connect_timeout;
        let tcp = match conduit_transport::connect(upstream.connect, timeout).await {
            Ok(s) => s,
            Err(error) => {
                tracing::info!(%error, "opaque connection refused upstream");
                return;
            }
        };
        if let Some(picked) = &mut upstream.picked {
            picked.observe();
        }
        let labels = TcpLabels {
            direction: self.direction(),
            peer: Peer::Dst,
            target_addr: upstream.endpoint,
            tls: match &upstream.tls {
                Some(id) => TlsLabel::Server(id.clone().into()),
                None => self.plain(),
            },
        };
        let tcp = CountingIo::new(tcp, self.metrics().tcp.open(&labels));
        match (&upstream.tls, self.client_tls()) {
            (Some(identity), Some(tls)) => {
                // Bounded like connecting, and boxed: the handshake's state is large.
                let handshake = conduit_tls::within(timeout, tls.connect_transport(identity, tcp));
                let mut tls = match Box::pin(handshake).await {
                    Ok(tls) => tls,
                    Err(error) => {
                        tracing::info!(%error, %identity, "opaque connection: mTLS failed");
                        return;
                    }
                };
                let header = TransportHeader {
                    port: upstream.endpoint.port(),
                };
                if let Err(error) = header.write(&mut tls).await {
                    tracing::info!(%error, "opaque connection closed before its header");
                    return;
                }
                conduit_http::forward::splice(io, tls).await
            }
            _ => conduit_http::forward::splice(io, tcp).await,
        }
    }

    /// Chooses the endpoint: balanced when the controller knows the original destination,
    /// else the original destination itself. `None` when there is nowhere to go.
    async fn tcp_upstream(&self, dst: &Destination, addr: SocketAddr) -> Option<Upstream> {
        let direct = Upstream {
            endpoint: addr,
            connect: addr,
            tls: None,
            picked: None,
        };
        let Route::Discovered(service, discover) = &dst.route else {
            return Some(direct);
        };
        // The HTTP/1 balancer's endpoints: the same stream and pool as the service's
        // HTTP/1 traffic, so one service is followed once.
        let balancer = discover.balancer(Addr::Socket(*service), Http::Http1);
        match balancer.choose().await {
            Ok(crate::balancer::Choice::Endpoint(picked)) => {
                let endpoint = *picked.key();
                let backend = picked.endpoint();
                // The client's endpoint says whether it is reached over mTLS, and as whom.
                let tls = backend.client.endpoint().tls.clone();
                let connect = match (&tls, backend.opaque_transport) {
                    (Some(_), Some(port)) => SocketAddr::new(endpoint.ip(), port),
                    _ => endpoint,
                };
                Some(Upstream {
                    endpoint,
                    connect,
                    tls,
                    picked: Some(picked),
                })
            }
            Ok(crate::balancer::Choice::Fallback) => Some(direct),
            Err(error) => {
                tracing::info!(%error.reason, "closing opaque connection");
                None
            }
        }
    }
}

/// Reads the transport header of a terminated connection, bounded by `timeout`.
pub(crate) async fn read_header<I>(
    io: &mut I,
    timeout: std::time::Duration,
) -> std::io::Result<TransportHeader>
where
    I: AsyncRead + Unpin,
{
    match tokio::time::timeout(timeout, TransportHeader::read(io)).await {
        Ok(result) => result.map_err(std::io::Error::other),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no transport header in time",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_port_is_on_loopback_unless_the_proxy_fronts_one_address() {
        let v4: SocketAddr = "10.1.0.7:4143".parse().unwrap();
        let v6: SocketAddr = "[fd00::7]:4143".parse().unwrap();
        let loopback = TransportTarget::Loopback {
            proxy_ports: Arc::from([4140, 4143, 4190, 4191]),
        };
        assert_eq!(
            loopback.resolve(v4, 5432).unwrap(),
            (
                "127.0.0.1:5432".parse().unwrap(),
                "10.1.0.7:5432".parse().unwrap()
            )
        );
        assert_eq!(
            loopback.resolve(v6, 5432).unwrap().0,
            "[::1]:5432".parse().unwrap()
        );
        for own in [4140, 4143, 4190, 4191] {
            let err = loopback.resolve(v4, own).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("the transport header names port {own}, one of the proxy's own")
            );
        }
        let app = "127.0.1.2:7001".parse().unwrap();
        assert_eq!(
            TransportTarget::Fixed(app).resolve(v4, 5432).unwrap(),
            (app, app)
        );
    }
}
