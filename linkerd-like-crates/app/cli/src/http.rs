//! A small HTTP/1 client for the CLI: every request goes to one address, whatever its URI.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

pub(crate) type HttpClient = Client<Via, Empty<Bytes>>;

/// Connects every request to one address (a proxy), whatever its URI names.
#[derive(Clone, Debug)]
pub(crate) struct Via(SocketAddr);

impl tower_service::Service<http::Uri> for Via {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: http::Uri) -> Self::Future {
        let addr = self.0;
        Box::pin(async move {
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Ok(TokioIo::new(s))
        })
    }
}

pub(crate) fn client_via(addr: SocketAddr) -> HttpClient {
    Client::builder(TokioExecutor::new()).build(Via(addr))
}

pub(crate) async fn get(client: &HttpClient, url: String) -> Option<(http::StatusCode, Bytes)> {
    let req = http::Request::get(url).body(Empty::new()).ok()?;
    let rsp = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .ok()?
        .ok()?;
    let status = rsp.status();
    let body = rsp.into_body().collect().await.ok()?.to_bytes();
    Some((status, body))
}

/// `GET path` from the server at `addr` (`host:port`): its body as text when it answers 200.
pub(crate) async fn get_text(addr: &str, path: &str) -> Result<String, String> {
    let sock = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr} has no address"))?;
    let (status, body) = get(&client_via(sock), format!("http://{addr}{path}"))
        .await
        .ok_or_else(|| format!("no answer from http://{addr}{path}"))?;
    if !status.is_success() {
        return Err(format!("http://{addr}{path} answered {status}"));
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}
