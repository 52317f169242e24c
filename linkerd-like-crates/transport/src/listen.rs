use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A bound listener.
#[derive(Debug)]
pub struct Listener {
    inner: TcpListener,
    local: SocketAddr,
}

/// An accepted connection and what is known of its addresses.
#[derive(Debug)]
pub struct Accepted {
    /// The stream.
    pub stream: TcpStream,
    /// The peer's address.
    pub client: SocketAddr,
    /// The listener's address.
    pub local: SocketAddr,
    /// Where the client meant to go, when the connection was redirected to us.
    pub orig_dst: Option<SocketAddr>,
}

/// Binds a listener on `addr` with `SO_REUSEADDR` and a deep backlog.
pub fn bind(addr: SocketAddr) -> io::Result<Listener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    let inner = TcpListener::from_std(socket.into())?;
    let local = inner.local_addr()?;
    Ok(Listener { inner, local })
}

impl Listener {
    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Accepts the next connection.
    pub async fn accept(&self) -> io::Result<Accepted> {
        let (stream, client) = self.inner.accept().await?;
        super::configure(&stream);
        let local = stream.local_addr().unwrap_or(self.local);
        let orig_dst = orig_dst(&stream).ok().filter(|dst| *dst != local);
        Ok(Accepted {
            stream,
            client,
            local,
            orig_dst,
        })
    }
}

/// Accepts one loopback connection, as if redirected from `orig_dst`: for tests of code that
/// decides where an accepted connection goes.
#[cfg(feature = "test-util")]
pub async fn accepted_for_test(orig_dst: Option<SocketAddr>) -> io::Result<Accepted> {
    let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let client = TcpStream::connect(listener.local_addr()).await?;
    let mut accepted = listener.accept().await?;
    accepted.orig_dst = orig_dst;
    // The client end may close; tests only look at the addresses.
    drop(client);
    Ok(accepted)
}

/// Reads the connection's original destination (`SO_ORIGINAL_DST`).
pub fn orig_dst(stream: &TcpStream) -> io::Result<SocketAddr> {
    let sock = socket2::SockRef::from(stream);
    let addr = match stream.local_addr()? {
        SocketAddr::V4(_) => sock.original_dst_v4()?,
        SocketAddr::V6(_) => sock.original_dst_v6()?,
    };
    addr.as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "original destination is not IP"))
}

/// Bounds the number of connections served at once. Past the limit, the accept loop waits
/// for a permit, leaving new connections in the kernel's backlog rather than dropping them.
#[derive(Clone, Debug)]
pub struct ConnectionLimit(Arc<Semaphore>);

impl ConnectionLimit {
    /// Allows `max` connections at once.
    pub fn new(max: usize) -> Self {
        Self(Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))))
    }

    /// Waits until a connection may be served; the permit is returned when dropped.
    pub async fn acquire(&self) -> OwnedSemaphorePermit {
        match self.0.clone().acquire_owned().await {
            Ok(permit) => permit,
            // The semaphore is never closed.
            Err(_) => unreachable!("connection limit semaphore closed"),
        }
    }

    /// Connections that may still be accepted now.
    pub fn available(&self) -> usize {
        self.0.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn direct_connections_have_no_original_destination() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr();
        let _client = TcpStream::connect(addr).await.unwrap();
        let accepted = listener.accept().await.unwrap();
        assert_eq!(accepted.local, addr);
        assert_eq!(accepted.orig_dst, None);
        assert_eq!(accepted.client.ip(), addr.ip());
    }

    #[tokio::test]
    async fn the_limit_holds_back_extra_connections() {
        let limit = ConnectionLimit::new(1);
        let first = limit.acquire().await;
        assert_eq!(limit.available(), 0);
        let pending = tokio::spawn({
            let limit = limit.clone();
            async move { limit.acquire().await }
        });
        tokio::task::yield_now().await;
        assert!(!pending.is_finished());
        drop(first);
        let _second = pending.await.unwrap();
    }
}
