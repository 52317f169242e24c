//! Mutual TLS between proxies.
//!
//! Both ends hold [`Credentials`] (a key and the certificate the controller issued for the
//! workload's identity), and trust the mesh's anchors:
//!
//! - [`ClientTls::connect`] opens TLS 1.3 to a meshed endpoint with SNI set to the identity
//!   discovery says it has. rustls checks that the server's certificate chains to the anchors,
//!   is valid now, and names exactly that identity; anything else fails the handshake. The
//!   client presents its own certificate, and offers ALPN `h2` (with `http/1.1` for requests
//!   that cannot travel over HTTP/2, such as upgrades).
//! - [`ClientTls::connect_transport`] does the same for opaque TCP, offering only ALPN
//!   [`ALPN_TRANSPORT`]: the bytes that follow the handshake start with a transport header
//!   naming the target port (crate `conduit-transport-header`), so the peer's inbound proxy
//!   can take the connection on its own port even for ports it never detects on.
//! - On the inbound side, [`client_hello`] reads the SNI out of a connection's first bytes
//!   without consuming them. When it is our own identity, [`ServerTls::accept`] terminates
//!   TLS, verifying the client's certificate if it sends one; [`peer_identity`] then names
//!   the client. TLS for any other name is not ours to terminate and is passed through.
//!
//! Only TLS 1.3 is offered. Certificates are resolved per handshake from the credentials, so
//! a renewed certificate needs no new configuration. The crypto provider is ring's.

#![forbid(unsafe_code)]

mod client_hello;
mod peer;

pub use self::client_hello::{client_hello, ClientHello};
pub use self::peer::peer_identity;
pub use conduit_identity::{Credentials, Name};
pub use tokio_rustls::client::TlsStream as ClientStream;
pub use tokio_rustls::server::TlsStream as ServerStream;

use rustls::pki_types::ServerName;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// ALPN for HTTP/2 between proxies.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN for HTTP/1.1 between proxies (requests HTTP/2 cannot carry, such as upgrades).
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// ALPN for opaque TCP between proxies, behind a transport header.
pub const ALPN_TRANSPORT: &[u8] = b"conduit.io/transport.v1";

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("TLS configuration failed: {0}")]
pub struct ConfigError(#[from] rustls::Error);

fn tls13(
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, rustls::Error> {
    rustls::ClientConfig::builder_with_provider(conduit_identity::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
}

/// Opens mutual TLS to other proxies.
#[derive(Clone, Debug)]
pub struct ClientTls {
    h2: Arc<rustls::ClientConfig>,
    http1: Arc<rustls::ClientConfig>,
    transport: Arc<rustls::ClientConfig>,
}

impl ClientTls {
    /// A client presenting `credentials` and trusting their anchors.
    pub fn new(credentials: Arc<Credentials>) -> Result<Self, ConfigError> {
        let config = |alpn: &[u8]| -> Result<_, ConfigError> {
            let mut config = tls13()?
                .with_root_certificates(credentials.anchors().roots().clone())
                .with_client_cert_resolver(credentials.clone());
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(config))
        };
        Ok(Self {
            h2: config(ALPN_H2)?,
            http1: config(ALPN_HTTP1)?,
            transport: config(ALPN_TRANSPORT)?,
        })
    }

    /// Completes a TLS handshake over `io` with the proxy whose identity is `server`, asking
    /// for HTTP/2, or HTTP/1.1 when `h2` is false.
    pub async fn connect<I>(
        &self,
        server: &Name,
        h2: bool,
        io: I,
    ) -> std::io::Result<ClientStream<I>>
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        let config = if h2 { &self.h2 } else { &self.http1 };
        handshake(config, server, io).await
    }

    /// Completes a TLS handshake over `io` with the proxy whose identity is `server`, for
    /// opaque TCP: the caller writes a transport header first. A server that does not
    /// agree to [`ALPN_TRANSPORT`] is refused, since it would read the header as data.
    pub async fn connect_transport<I>(
        &self,
        server: &Name,
        io: I,
    ) -> std::io::Result<ClientStream<I>>
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        let tls = handshake(&self.transport, server, io).await?;
        if tls.get_ref().1.alpn_protocol() != Some(ALPN_TRANSPORT) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{server} does not take opaque TCP from proxies (no ALPN agreed)"),
            ));
        }
        Ok(tls)
    }
}

async fn handshake<I>(
    config: &Arc<rustls::ClientConfig>,
    server: &Name,
    io: I,
) -> std::io::Result<ClientStream<I>>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let name = ServerName::try_from(server.as_str().to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, io)
        .await
}

/// Bounds a TLS handshake by `timeout`: a peer that stalls mid-handshake is given up on, with
/// a `TimedOut` error that says how long it had.
pub async fn within<T>(
    timeout: std::time::Duration,
    handshake: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    match tokio::time::timeout(timeout, handshake).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no TLS handshake within {timeout:?}"),
        )),
    }
}

/// Whether the client of a terminated connection asked for opaque TCP behind a transport
/// header ([`ALPN_TRANSPORT`]).
pub fn is_transport(conn: &rustls::ServerConnection) -> bool {
    conn.alpn_protocol() == Some(ALPN_TRANSPORT)
}

/// Connects to the proxy at `addr` as a client without a certificate, completes a handshake
/// for `server` (which must chain to `anchors` and be valid now), and returns the chain the
/// proxy served, leaf first: what `conduit identity` shows, and how tests see rotation.
pub async fn served_chain(
    addr: std::net::SocketAddr,
    server: &Name,
    anchors: &conduit_identity::TrustAnchors,
) -> std::io::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let config = tls13()
        .map_err(std::io::Error::other)?
        .with_root_certificates(anchors.roots().clone())
        .with_no_client_auth();
    let name = ServerName::try_from(server.as_str().to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    let certs = tls.get_ref().1.peer_certificates().unwrap_or_default();
    Ok(certs.iter().map(|c| c.clone().into_owned()).collect())
}

/// Terminates mutual TLS for our own identity.
#[derive(Clone, Debug)]
pub struct ServerTls {
    name: Name,
    config: Arc<rustls::ServerConfig>,
}

impl ServerTls {
    /// A server presenting `credentials`, verifying clients against their anchors.
    pub fn new(credentials: Arc<Credentials>) -> Result<Self, ConfigError> {
        let mut config = rustls::ServerConfig::builder_with_provider(conduit_identity::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(credentials.anchors().client_verifier().clone())
            .with_cert_resolver(credentials.clone());
        config.alpn_protocols = vec![
            ALPN_H2.to_vec(),
            ALPN_HTTP1.to_vec(),
            ALPN_TRANSPORT.to_vec(),
        ];
        Ok(Self {
            name: credentials.name().clone(),
            config: Arc::new(config),
        })
    }

    /// Our identity: a ClientHello for this name is ours to terminate.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// Completes a TLS handshake over `io`, whose first bytes are the ClientHello.
    pub async fn accept<I>(&self, io: I) -> std::io::Result<ServerStream<I>>
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
            .accept(io)
            .await
    }
}
