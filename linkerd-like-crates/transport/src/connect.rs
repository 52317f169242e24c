use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The peer refused or reset the connection, or could not be reached.
    #[error("connect to {addr} failed: {source}")]
    Failed {
        /// The address dialed.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The connection was not established in time.
    #[error("connect to {addr} timed out after {timeout:?}")]
    Timeout {
        /// The address dialed.
        addr: SocketAddr,
        /// The limit that passed.
        timeout: Duration,
    },
}

/// Connects to `addr` within `timeout`.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            super::configure(&stream);
            Ok(stream)
        }
        Ok(Err(source)) => Err(ConnectError::Failed { addr, source }),
        Err(_) => Err(ConnectError::Timeout { addr, timeout }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_is_a_failure_not_a_timeout() {
        // Bind then drop to find a port nobody listens on.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let err = connect(addr, Duration::from_secs(5)).await.unwrap_err();
        match err {
            ConnectError::Failed { source, .. } => {
                assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused)
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[tokio::test]
    async fn connects_and_sets_nodelay() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = connect(l.local_addr().unwrap(), Duration::from_secs(5))
            .await
            .unwrap();
        assert!(s.nodelay().unwrap());
    }
}
