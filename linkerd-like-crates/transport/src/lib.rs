//! TCP transport for a proxy.
//!
//! - [`bind`] opens a listener with the options a proxy wants (address reuse, a deep backlog).
//! - [`orig_dst`] reads `SO_ORIGINAL_DST`, the address a connection was headed for before
//!   iptables redirected it to the proxy. A connection made straight to the proxy reports the
//!   listener's own address (or nothing, without conntrack); [`Accepted::orig_dst`] folds both
//!   cases into `None`, which is how the proxy tells explicit mode from transparent mode.
//! - [`connect`] dials with a timeout, `TCP_NODELAY` and keep-alive, and says precisely why it
//!   failed through [`ConnectError`], so the HTTP layer can answer 502 or 504.
//! - [`ConnectionLimit`] bounds how many accepted connections are served at once.

#![forbid(unsafe_code)]

mod connect;
mod listen;
mod serve;

pub use self::connect::{connect, ConnectError};
#[cfg(feature = "test-util")]
pub use self::listen::accepted_for_test;
pub use self::listen::{bind, orig_dst, Accepted, ConnectionLimit, Listener};
pub use self::serve::serve;

/// Options applied to every proxied socket.
pub(crate) fn configure(stream: &tokio::net::TcpStream) {
    // Latency matters more than packet count for request/response traffic.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "failed to set TCP_NODELAY");
    }
    let keepalive = socket2::TcpKeepalive::new().with_time(std::time::Duration::from_secs(10));
    if let Err(error) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!(%error, "failed to set keepalive");
    }
}
