//! gRPC channels over mTLS: the proxy's to the controller (Destination, Policy, Identity)
//! and the controller's to proxies (Tap, proxy stats). With TLS, the client checks that the
//! peer is the identity it expects (chained to the trust anchors), so what it sends (a
//! token, a CSR, a tap filter) never crosses in clear; its own certificate goes along when
//! it has one.

use conduit_io::Io;
use conduit_tls::{ClientTls, Name};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::transport::Channel;

/// Connects to `addr` (`host:port`), with TLS for `tls`'s name if given.
#[derive(Clone, Debug)]
pub struct Connector {
    addr: String,
    tls: Option<(ClientTls, Name)>,
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<Box<dyn Io>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let addr = tokio::net::lookup_host(&this.addr)
                .await?
                .next()
                .ok_or_else(|| std::io::Error::other(format!("{} has no address", this.addr)))?;
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let io: Box<dyn Io> = match &this.tls {
                Some((tls, name)) => Box::new(tls.connect(name, true, tcp).await?),
                None => Box::new(tcp),
            };
            Ok(TokioIo::new(io))
        })
    }
}

/// A channel to `addr`, connecting lazily and again whenever needed.
pub fn channel(
    addr: &str,
    tls: Option<(ClientTls, Name)>,
) -> Result<Channel, crate::InvalidControllerAddr> {
    let connector = Connector {
        addr: addr.to_string(),
        tls,
    };
    Ok(crate::controller_endpoint(addr)?.connect_with_connector_lazy(connector))
}
