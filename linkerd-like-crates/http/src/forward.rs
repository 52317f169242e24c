//! Forwarding a request to an endpoint as an intermediary.

use crate::client::Client;
use crate::errors::{ErrorStatus, ResponseTimeout};
use crate::headers::{strip_hop_by_hop, wants_upgrade};
use crate::ProxyBody;
use conduit_error::Error;
use http::{Method, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Sends `req` to `client`'s endpoint and returns its response, ready to send downstream.
///
/// `authority` is used when the request names none itself (an HTTP/1.0 request without
/// `Host`); it is normally the original destination. Upgrades and `CONNECT` tunnels are
/// spliced once both sides agree; the splice runs as its own task.
pub async fn forward(
    client: &Client,
    mut req: http::Request<Incoming>,
    authority: &http::uri::Authority,
    response_timeout: Option<Duration>,
) -> Result<http::Response<ProxyBody>, Error> {
    let is_connect = req.method() == Method::CONNECT;
    let downstream = if is_connect || wants_upgrade(req.headers()) {
        Some(hyper::upgrade::on(&mut req))
    } else {
        None
    };
    strip_hop_by_hop(req.headers_mut(), downstream.is_some() && !is_connect);
    if !is_connect {
        *req.uri_mut() = absolute_uri(&req, authority)?;
    }

    let call = client.request(req);
    let mut rsp = match response_timeout {
        Some(t) => tokio::time::timeout(t, call)
            .await
            .map_err(|_| ResponseTimeout(t))??,
        None => call.await?,
    };

    let upgraded = match rsp.status() {
        StatusCode::SWITCHING_PROTOCOLS => true,
        s if is_connect => s.is_success(),
        _ => false,
    };
    match downstream {
        Some(downstream) if upgraded => {
            let upstream = hyper::upgrade::on(&mut rsp);
            tokio::spawn(splice_upgrades(downstream, upstream));
            if !is_connect {
                strip_hop_by_hop(rsp.headers_mut(), true);
            }
        }
        _ => strip_hop_by_hop(rsp.headers_mut(), false),
    }
    Ok(rsp.map(ProxyBody::Incoming))
}

/// The request's URI in absolute form, which the client needs to pick its connection.
fn absolute_uri<B>(
    req: &http::Request<B>,
    fallback: &http::uri::Authority,
) -> Result<Uri, ErrorStatus> {
    let uri = req.uri();
    if uri.scheme().is_some() && uri.authority().is_some() {
        return Ok(uri.clone());
    }
    let authority = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
        .unwrap_or_else(|| fallback.clone());
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Uri::builder()
        .scheme(http::uri::Scheme::HTTP)
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| ErrorStatus::new(StatusCode::BAD_REQUEST, format!("invalid request URI: {e}")))
}

async fn splice_upgrades(downstream: OnUpgrade, upstream: OnUpgrade) {
    match tokio::try_join!(downstream, upstream) {
        Ok((down, up)) => splice(TokioIo::new(down), TokioIo::new(up)).await,
        Err(error) => tracing::debug!(%error, "upgrade failed"),
    }
}

/// Copies bytes both ways until both sides are done, passing half-closes through.
pub async fn splice<A, B>(mut a: A, mut b: B)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::io::copy_bidirectional(&mut a, &mut b).await {
        Ok((down, up)) => tracing::trace!(down, up, "tunnel closed"),
        Err(error) => tracing::debug!(%error, "tunnel closed with an error"),
    }
}

/// Answers a `CONNECT` request by tunnelling to `upstream` directly (explicit proxy mode).
pub fn tunnel<U>(req: &mut http::Request<Incoming>, upstream: U) -> http::Response<ProxyBody>
where
    U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let downstream = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match downstream.await {
            Ok(down) => splice(TokioIo::new(down), upstream).await,
            Err(error) => tracing::debug!(%error, "CONNECT upgrade failed"),
        }
    });
    http::Response::new(ProxyBody::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_form_becomes_absolute_with_the_host_header() {
        let req = http::Request::builder()
            .uri("/a?b=1")
            .header("host", "books:8080")
            .body(())
            .unwrap();
        let fallback = http::uri::Authority::from_static("10.0.0.1:80");
        let uri = absolute_uri(&req, &fallback).unwrap();
        assert_eq!(uri, "http://books:8080/a?b=1");
    }

    #[test]
    fn no_host_falls_back_to_the_destination() {
        let req = http::Request::builder().uri("/").body(()).unwrap();
        let fallback = http::uri::Authority::from_static("10.0.0.1:80");
        assert_eq!(
            absolute_uri(&req, &fallback).unwrap(),
            "http://10.0.0.1:80/"
        );
    }

    #[test]
    fn absolute_uris_are_kept() {
        let req = http::Request::builder()
            .uri("http://a:1/x")
            .header("host", "b:2")
            .body(())
            .unwrap();
        let fallback = http::uri::Authority::from_static("c:3");
        assert_eq!(absolute_uri(&req, &fallback).unwrap(), "http://a:1/x");
    }
}
