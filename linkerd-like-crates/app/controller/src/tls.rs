//! The controller's gRPC port: TLS as the controller's own identity for clients that open
//! with a ClientHello (proxies with an identity, so their tokens and CSRs never cross in
//! clear), plaintext for the rest (tools such as `conduit check`, proxies without identity).
//!
//! The controller certifies itself with its own issuer, as
//! `conduit-controller.<control-ns>.serviceaccount.identity.<control-ns>.<trust-domain>`, and
//! renews like a proxy does: at 70% of the lifetime, and at once when the issuer changes.

use conduit_control_ca::Issuer;
use conduit_identity::{Credentials, Domain, Workload};
use conduit_tls::{ClientHello, ServerTls};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

/// The service account the controller runs as.
pub const CONTROLLER_SERVICE_ACCOUNT: &str = "conduit-controller";

/// One accepted connection, TLS or not.
pub struct ControllerIo(Pin<Box<dyn conduit_io::Io>>);

impl std::fmt::Debug for ControllerIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerIo").finish_non_exhaustive()
    }
}

impl AsyncRead for ControllerIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.0.as_mut().poll_read(cx, buf)
    }
}

impl AsyncWrite for ControllerIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.as_mut().poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.0.as_mut().poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.0.as_mut().poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for ControllerIo {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

/// Accepts from `listener`; with `tls`, a connection that opens with a ClientHello is
/// terminated as the controller, others are served as they are. Handshakes run on their own
/// tasks, so a slow client holds up no one.
pub fn incoming(
    listener: tokio::net::TcpListener,
    tls: Option<ServerTls>,
) -> ReceiverStream<std::io::Result<ControllerIo>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, client) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            let _ = tcp.set_nodelay(true);
            let (tx, tls) = (tx.clone(), tls.clone());
            tokio::spawn(async move {
                let io = match tls {
                    None => ControllerIo(Box::pin(tcp)),
                    Some(tls) => match accept(tcp, &tls).await {
                        Ok(io) => io,
                        Err(error) => {
                            tracing::debug!(%error, %client, "connection failed before it was served");
                            return;
                        }
                    },
                };
                let _ = tx.send(Ok(io)).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

async fn accept(tcp: tokio::net::TcpStream, tls: &ServerTls) -> std::io::Result<ControllerIo> {
    let detect = conduit_detect::Config {
        timeout: Duration::from_secs(10),
        max_bytes: 16 * 1024,
    };
    let (hello, io) = conduit_detect::read_until(tcp, detect, conduit_tls::client_hello).await?;
    Ok(match hello {
        Some(ClientHello::Tls { .. }) => {
            let io = conduit_tls::within(detect.timeout, tls.accept(io)).await?;
            ControllerIo(Box::pin(io))
        }
        _ => ControllerIo(Box::pin(io)),
    })
}

/// The controller's own credentials, certified by its issuer now and kept certified: renewed
/// at 70% of their lifetime and whenever the issuer changes.
pub fn certify_self(
    mut issuer: watch::Receiver<Option<Arc<Issuer>>>,
    domain: &Domain,
    lifetime: Duration,
) -> Result<Arc<Credentials>, String> {
    let current = issuer.borrow_and_update().clone().ok_or("no issuer")?;
    let controller = Workload {
        service_account: CONTROLLER_SERVICE_ACCOUNT.into(),
        namespace: domain.control_namespace.clone(),
    };
    let (creds, expiry) = current.issue_credentials(domain, &controller, lifetime)?;
    let creds = Arc::new(creds);
    let spiffe = domain.spiffe_id(&controller);
    let renew_in = |expiry| conduit_identity::certify::renew_in(expiry, SystemTime::now());
    let certify = {
        let creds = creds.clone();
        move |issuer: &Issuer| -> Result<Duration, String> {
            Ok(renew_in(
                issuer.certify_credentials(&creds, &spiffe, lifetime)?,
            ))
        }
    };
    let mut wait = renew_in(expiry);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                changed = issuer.changed() => if changed.is_err() { return },
            }
            let Some(current) = issuer.borrow_and_update().clone() else {
                wait = Duration::from_secs(1);
                continue;
            };
            wait = match certify(&current) {
                Ok(wait) => wait,
                Err(error) => {
                    tracing::warn!(%error, "could not renew the controller's certificate");
                    Duration::from_secs(1)
                }
            };
        }
    });
    Ok(creds)
}
