//! Upgrades (`Upgrade: websocket`) and `CONNECT` tunnels of downstream requests, whichever
//! server took them: hyper's HTTP/1 server hands them over through hyper's own upgrade, the
//! HTTP/2 server (`h2_server`) through [`H2Tunnel`] once the response has gone out.

use crate::h2_body::Tunnel;
use conduit_error::Error;
use conduit_io::Io;
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

/// A downstream request's upgraded connection, once its response has been sent.
#[derive(Debug)]
pub struct OnUpgrade(Inner);

#[derive(Debug)]
enum Inner {
    Hyper(hyper::upgrade::OnUpgrade),
    H2(Option<oneshot::Receiver<Tunnel>>),
}

/// Takes the upgrade of `req`; for a request that cannot be upgraded, the returned
/// [`OnUpgrade`] fails.
pub fn on<B>(req: &mut http::Request<B>) -> OnUpgrade {
    match req.extensions_mut().remove::<H2Tunnel>() {
        Some(tunnel) => OnUpgrade(Inner::H2(tunnel.take())),
        None => OnUpgrade(Inner::Hyper(hyper::upgrade::on(req))),
    }
}

impl OnUpgrade {
    /// The connection, once the upgrade or tunnel is agreed and the response sent.
    pub async fn upgraded(self) -> Result<Box<dyn Io>, Error> {
        match self.0 {
            Inner::Hyper(on) => Ok(Box::new(TokioIo::new(on.await?))),
            Inner::H2(Some(rx)) => match rx.await {
                Ok(tunnel) => Ok(Box::new(tunnel)),
                Err(_) => Err("the CONNECT stream was not answered with a tunnel".into()),
            },
            Inner::H2(None) => Err("the CONNECT stream's tunnel was already taken".into()),
        }
    }
}

/// Carried in an HTTP/2 `CONNECT` request's extensions: the server fills it with the stream,
/// as a [`Tunnel`], when a 2xx response has been sent.
#[derive(Clone, Debug)]
pub(crate) struct H2Tunnel(Arc<Mutex<Option<oneshot::Receiver<Tunnel>>>>);

impl H2Tunnel {
    /// The extension, and the sender the server fills it through.
    pub(crate) fn pair() -> (Self, oneshot::Sender<Tunnel>) {
        let (tx, rx) = oneshot::channel();
        (Self(Arc::new(Mutex::new(Some(rx)))), tx)
    }

    fn take(&self) -> Option<oneshot::Receiver<Tunnel>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}
