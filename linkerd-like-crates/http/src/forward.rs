//! Forwarding a request to an endpoint as an intermediary.

use crate::client::{Client, Endpoint, Slot};
use crate::errors::ErrorStatus;
use crate::headers::{strip_hop_by_hop, wants_upgrade};
use crate::upgrade::{self, OnUpgrade};
use crate::{Deadline, Http, ProxyBody};
use conduit_error::Error;
use futures::future::Either;
use http::{Method, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Sends `req` to `client`'s endpoint and returns its response, ready to send downstream.
///
/// `authority` is used when the request names none itself (an HTTP/1.0 request without
/// `Host`); it is normally the original destination. HTTP/1.1 requests reuse the upstream
/// connection in `slot`. Upgrades and `CONNECT` tunnels are spliced once both sides agree;
/// the splice runs as its own task.
///
/// The request is rewritten here, before the future exists, and the future is a named one
/// that owns the client's future and nothing more: an `async fn` would hold the request
/// twice (as its argument and as a local) beside the client's future, which holds it once
/// more, and the whole is moved and allocated on every request.
pub fn forward(
    client: Client,
    slot: Arc<Slot>,
    mut req: http::Request<ProxyBody>,
    authority: &http::uri::Authority,
    response_timeout: Option<Duration>,
) -> Forward<impl Future<Output = Result<http::Response<ProxyBody>, Error>> + Send + 'static> {
    let is_connect = req.method() == Method::CONNECT;
    let downstream = if is_connect || wants_upgrade(req.headers()) {
        Some(upgrade::on(&mut req))
    } else {
        None
    };
    strip_hop_by_hop(req.headers_mut(), downstream.is_some() && !is_connect);
    let call = match rewrite_for(
        client.endpoint(),
        &mut req,
        authority,
        is_connect,
        downstream.is_some(),
    ) {
        Ok(()) => Either::Right(client.send(slot, req)),
        Err(e) => Either::Left(std::future::ready(Err(e.into()))),
    };
    Forward {
        call: Deadline::new(call, response_timeout),
        downstream,
        is_connect,
    }
}

/// Puts a request in the form its endpoint takes (see [`forward`]).
fn rewrite_for(
    endpoint: &Endpoint,
    req: &mut http::Request<ProxyBody>,
    authority: &http::uri::Authority,
    is_connect: bool,
    upgrading: bool,
) -> Result<(), ErrorStatus> {
    if is_connect {
        return Ok(());
    }
    match endpoint.http {
        // To another proxy, HTTP/1 travels as HTTP/2, marked to be restored there.
        Http::Http1 if endpoint.tls.is_some() && !upgrading => {
            let proto = match req.version() {
                http::Version::HTTP_10 => ORIG_PROTO_HTTP10,
                _ => ORIG_PROTO_HTTP11,
            };
            make_absolute(req, authority)?;
            req.headers_mut().remove(http::header::HOST);
            req.headers_mut()
                .insert(ORIG_PROTO, http::HeaderValue::from_static(proto));
            *req.version_mut() = http::Version::HTTP_2;
        }
        Http::Http1 => {
            restore_orig_proto(req);
            to_origin_form(req, authority);
        }
        Http::H2 => make_absolute(req, authority)?,
    }
    Ok(())
}

/// A request that failed before it was sent (its URI could not be made absolute).
type Failed = std::future::Ready<Result<http::Response<ProxyBody>, Error>>;

/// The future of [`forward`]: the client's response, under the response timeout, with its
/// upgrade (if any) spliced to the downstream one.
#[pin_project::pin_project]
pub struct Forward<F> {
    #[pin]
    call: Deadline<Either<Failed, F>>,
    downstream: Option<OnUpgrade>,
    is_connect: bool,
}

impl<F> std::fmt::Debug for Forward<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forward")
            .field("is_connect", &self.is_connect)
            .finish_non_exhaustive()
    }
}

impl<F> Future for Forward<F>
where
    F: Future<Output = Result<http::Response<ProxyBody>, Error>>,
{
    type Output = Result<http::Response<ProxyBody>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut rsp = std::task::ready!(this.call.poll(cx))?;
        let is_connect = *this.is_connect;
        let upgraded = match rsp.status() {
            StatusCode::SWITCHING_PROTOCOLS => true,
            s if is_connect => s.is_success(),
            _ => false,
        };
        match this.downstream.take() {
            Some(downstream) if upgraded => {
                let upstream = hyper::upgrade::on(&mut rsp);
                tokio::spawn(splice_upgrades(downstream, upstream));
                if !is_connect {
                    strip_hop_by_hop(rsp.headers_mut(), true);
                }
            }
            _ => strip_hop_by_hop(rsp.headers_mut(), false),
        }
        Poll::Ready(Ok(rsp))
    }
}

/// Marks an HTTP/1 request carried as HTTP/2 between proxies; its value is the original
/// version. The receiving proxy restores the request and removes the header.
///
/// A `HeaderName` made at compile time: a name given as text would be copied into a new
/// allocation on every insert.
pub const ORIG_PROTO: http::HeaderName = http::HeaderName::from_static("conduit-orig-proto");
const ORIG_PROTO_HTTP11: &str = "HTTP/1.1";
const ORIG_PROTO_HTTP10: &str = "HTTP/1.0";

/// Whether a request is an HTTP/1 request carried as HTTP/2 by another proxy.
pub fn is_orig_proto<B>(req: &http::Request<B>) -> bool {
    req.version() == http::Version::HTTP_2 && req.headers().contains_key(ORIG_PROTO)
}

/// Restores an HTTP/1 request that another proxy carried as HTTP/2.
fn restore_orig_proto<B>(req: &mut http::Request<B>) {
    if req.version() != http::Version::HTTP_2 {
        return;
    }
    let version = match req.headers_mut().remove(ORIG_PROTO) {
        Some(v) if v == ORIG_PROTO_HTTP10 => http::Version::HTTP_10,
        _ => http::Version::HTTP_11,
    };
    *req.version_mut() = version;
}

/// Rewrites an HTTP/1.1 request for an origin server: origin-form URI (an explicit proxy's
/// clients send absolute-form), and a `Host` header, from the URI or else `fallback`.
fn to_origin_form<B>(req: &mut http::Request<B>, fallback: &http::uri::Authority) {
    let uri = req.uri();
    let host = uri.authority().unwrap_or(fallback).as_str();
    if !req.headers().contains_key(http::header::HOST) {
        if let Ok(value) = http::HeaderValue::from_str(host) {
            req.headers_mut().insert(http::header::HOST, value);
        }
    }
    if req.uri().authority().is_some() {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(path);
    }
}

/// The authority a request names: its URI's (absolute-form, CONNECT, HTTP/2), else a valid
/// `Host` header.
pub fn request_authority<B>(req: &http::Request<B>) -> Option<http::uri::Authority> {
    if let Some(a) = req.uri().authority() {
        return Some(a.clone());
    }
    req.headers()
        .get(http::header::HOST)
        .and_then(host_authority)
}

/// A `Host` header's value as an authority, if it is a valid one.
fn host_authority(host: &http::HeaderValue) -> Option<http::uri::Authority> {
    http::uri::Authority::try_from(host.as_bytes()).ok()
}

/// Puts the request's URI in absolute form, as HTTP/2 carries it (`:scheme`, `:authority`):
/// the authority from the URI, else a valid `Host` header, else `fallback`.
///
/// The URI is rebuilt from its own parts, so its path is moved, not copied; and a `Host`
/// header equal to `fallback` (the router's authority is usually that very header) shares
/// `fallback`'s bytes instead of being parsed into new ones.
fn make_absolute<B>(
    req: &mut http::Request<B>,
    fallback: &http::uri::Authority,
) -> Result<(), ErrorStatus> {
    if req.uri().scheme().is_some() && req.uri().authority().is_some() {
        return Ok(());
    }
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    let authority = match (
        parts.authority.take(),
        req.headers().get(http::header::HOST),
    ) {
        (Some(authority), _) => authority,
        (None, Some(host)) if host.as_bytes() == fallback.as_str().as_bytes() => fallback.clone(),
        (None, Some(host)) => host_authority(host).unwrap_or_else(|| fallback.clone()),
        (None, None) => fallback.clone(),
    };
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *req.uri_mut() = Uri::from_parts(parts).map_err(|e| {
        ErrorStatus::new(StatusCode::BAD_REQUEST, format!("invalid request URI: {e}"))
    })?;
    Ok(())
}

async fn splice_upgrades(downstream: OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let upstream = async { Ok::<_, Error>(TokioIo::new(upstream.await?)) };
    match tokio::try_join!(downstream.upgraded(), upstream) {
        Ok((down, up)) => splice(down, up).await,
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
pub fn tunnel<U>(req: &mut http::Request<ProxyBody>, upstream: U) -> http::Response<ProxyBody>
where
    U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let downstream = upgrade::on(req);
    tokio::spawn(async move {
        match downstream.upgraded().await {
            Ok(down) => splice(down, upstream).await,
            Err(error) => tracing::debug!(%error, "CONNECT upgrade failed"),
        }
    });
    http::Response::new(ProxyBody::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `make_absolute` on a request with `uri` and, if given, a `Host` header, against the
    /// fallback `10.0.0.1:80`.
    fn absolute(uri: &str, host: Option<&str>) -> Uri {
        let mut req = http::Request::builder().uri(uri);
        if let Some(host) = host {
            req = req.header("host", host);
        }
        let mut req = req.body(()).unwrap();
        let fallback = http::uri::Authority::from_static("10.0.0.1:80");
        make_absolute(&mut req, &fallback).unwrap();
        req.uri().clone()
    }

    #[test]
    fn uris_become_absolute_from_their_authority_the_host_or_the_destination() {
        // (URI, Host, absolute URI)
        let cases = [
            ("/a?b=1", Some("books:8080"), "http://books:8080/a?b=1"),
            // A Host equal to the fallback shares its bytes: the same URI as parsed anew.
            ("/a?b=1", Some("10.0.0.1:80"), "http://10.0.0.1:80/a?b=1"),
            // Authority form (CONNECT) keeps its authority over the Host, and gets a path.
            ("books:8080", Some("other:1"), "http://books:8080/"),
            ("/x", Some("bad host"), "http://10.0.0.1:80/x"),
            ("/", None, "http://10.0.0.1:80/"),
            ("http://a:1/x", Some("b:2"), "http://a:1/x"),
        ];
        for (uri, host, want) in cases {
            assert_eq!(absolute(uri, host), want, "{uri} with host {host:?}");
        }
    }

    #[test]
    fn absolute_form_becomes_origin_form_with_a_host() {
        let mut req = http::Request::builder()
            .uri("http://books:8080/a?b=1")
            .body(())
            .unwrap();
        let fallback = http::uri::Authority::from_static("10.0.0.1:80");
        to_origin_form(&mut req, &fallback);
        assert_eq!(req.uri(), "/a?b=1");
        assert_eq!(req.headers()["host"], "books:8080");
    }

    #[test]
    fn origin_form_keeps_its_host_or_gets_the_destination() {
        let mut with_host = http::Request::builder()
            .uri("/x")
            .header("host", "web")
            .body(())
            .unwrap();
        let fallback = http::uri::Authority::from_static("10.0.0.1:80");
        to_origin_form(&mut with_host, &fallback);
        assert_eq!(with_host.uri(), "/x");
        assert_eq!(with_host.headers()["host"], "web");
        let mut http10 = http::Request::builder().uri("/").body(()).unwrap();
        to_origin_form(&mut http10, &fallback);
        assert_eq!(http10.headers()["host"], "10.0.0.1:80");
    }
}
