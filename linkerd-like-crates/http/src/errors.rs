//! Errors a client can read.
//!
//! Every failure inside the proxy becomes a response, never a dropped connection: the status
//! says what kind of failure it was, and the `conduit-proxy-error` header says why, so an
//! operator can tell a proxy's answer from the application's. Requests from gRPC clients get
//! HTTP 200 with a `grpc-status` and `grpc-message`, as gRPC clients expect.
//!
//! | cause | status | gRPC |
//! |---|---|---|
//! | connect timed out, response timed out | 504 | DEADLINE_EXCEEDED (4) |
//! | connect refused or failed, upstream reset or closed | 502 | UNAVAILABLE (14) |
//! | an [`ErrorStatus`] raised by a stack (bad request, no route...) | its own | by status |
//!
//! A request the upstream refused unprocessed ([`Refused`]) gets the 502 too, marked
//! [`RefusedStream`]: an HTTP/2 client is told instead with RST_STREAM REFUSED_STREAM, the
//! signal that lets it send the request again by itself, as gRPC clients do.

use crate::client::Refused;
use crate::ProxyBody;
use conduit_error::{cause_ref, Error};
use conduit_transport::ConnectError;
use http::{HeaderValue, StatusCode};
use std::time::Duration;

/// The header naming why the proxy answered instead of the application.
pub const PROXY_ERROR_HEADER: &str = "conduit-proxy-error";

/// An error that carries the status it should be answered with.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct ErrorStatus {
    /// The status to answer with.
    pub status: StatusCode,
    /// Why, for the `conduit-proxy-error` header.
    pub reason: String,
}

impl ErrorStatus {
    /// An error answered with `status`.
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }
}

/// Marks an error response to a request the upstream refused unprocessed (see the module
/// docs): an HTTP/2 server resets the stream with REFUSED_STREAM rather than send it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefusedStream;

/// The upstream did not send response headers in time.
#[derive(Debug, thiserror::Error)]
#[error("timeout: no response headers within {0:?}")]
pub struct ResponseTimeout(pub Duration);

/// Picks the status and reason for an error.
pub fn classify(error: &(dyn std::error::Error + 'static)) -> (StatusCode, String) {
    if let Some(e) = cause_ref::<ErrorStatus>(error) {
        return (e.status, e.reason.clone());
    }
    if let Some(e) = cause_ref::<ResponseTimeout>(error) {
        return (StatusCode::GATEWAY_TIMEOUT, e.to_string());
    }
    if let Some(e) = cause_ref::<ConnectError>(error) {
        let status = match e {
            ConnectError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ConnectError::Failed { .. } => StatusCode::BAD_GATEWAY,
        };
        return (status, e.to_string());
    }
    if let Some(e) = cause_ref::<hyper::Error>(error) {
        return (StatusCode::BAD_GATEWAY, format!("upstream: {e}"));
    }
    (StatusCode::BAD_GATEWAY, error.to_string())
}

fn grpc_code(status: StatusCode) -> u16 {
    match status {
        StatusCode::GATEWAY_TIMEOUT | StatusCode::REQUEST_TIMEOUT => 4,
        StatusCode::BAD_REQUEST => 3,
        StatusCode::FORBIDDEN => 7,
        StatusCode::NOT_FOUND => 12,
        _ => 14,
    }
}

/// A header value from free text: anything outside visible ASCII becomes a space.
fn header_text(s: &str) -> HeaderValue {
    let clean: String = s
        .chars()
        .take(512)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .collect();
    HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static("error"))
}

/// Builds the response for `error`; `grpc` when the request came from a gRPC client.
pub fn response(error: &Error, grpc: bool) -> http::Response<ProxyBody> {
    let (status, reason) = classify(&**error);
    tracing::debug!(%status, %reason, "answering with an error");
    let mut rsp = http::Response::new(ProxyBody::empty());
    let reason_value = header_text(&reason);
    if grpc {
        let headers = rsp.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from(grpc_code(status)));
        headers.insert("grpc-message", reason_value.clone());
    } else {
        *rsp.status_mut() = status;
        rsp.headers_mut()
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    rsp.headers_mut().insert(PROXY_ERROR_HEADER, reason_value);
    if cause_ref::<Refused>(&**error).is_some() {
        rsp.extensions_mut().insert(RefusedStream);
    }
    rsp
}

/// True when the request comes from a gRPC client.
pub fn is_grpc<B>(req: &http::Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn connect_errors_map_to_gateway_statuses() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let refused: Error = Box::new(ConnectError::Failed {
            addr,
            source: io::ErrorKind::ConnectionRefused.into(),
        });
        assert_eq!(classify(&*refused).0, StatusCode::BAD_GATEWAY);
        let timeout: Error = Box::new(ConnectError::Timeout {
            addr,
            timeout: Duration::from_secs(1),
        });
        assert_eq!(classify(&*timeout).0, StatusCode::GATEWAY_TIMEOUT);
        let rsp = response(&timeout, false);
        assert_eq!(rsp.status(), StatusCode::GATEWAY_TIMEOUT);
        let reason = rsp.headers()[PROXY_ERROR_HEADER].to_str().unwrap();
        assert!(reason.contains("timed out"), "{reason}");
    }

    #[test]
    fn grpc_clients_get_a_grpc_status() {
        let err: Error = Box::new(ResponseTimeout(Duration::from_secs(2)));
        let rsp = response(&err, true);
        assert_eq!(rsp.status(), StatusCode::OK);
        assert_eq!(rsp.headers()["grpc-status"], "4");
        assert!(rsp.headers().contains_key("grpc-message"));
        assert!(rsp.headers().contains_key(PROXY_ERROR_HEADER));
    }

    #[test]
    fn refused_requests_are_marked_and_say_they_are_safe_to_retry() {
        let err: Error = Box::new(Refused(h2::Reason::REFUSED_STREAM.into()));
        let rsp = response(&err, false);
        assert_eq!(rsp.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(rsp.extensions().get(), Some(&RefusedStream));
        let reason = rsp.headers()[PROXY_ERROR_HEADER].to_str().unwrap();
        assert!(
            reason.contains("refused the request unprocessed"),
            "{reason}"
        );
        assert!(reason.contains("safe to retry"), "{reason}");
        let other: Error = Box::new(ResponseTimeout(Duration::from_secs(1)));
        assert_eq!(
            response(&other, false).extensions().get::<RefusedStream>(),
            None
        );
    }

    #[test]
    fn stacks_choose_their_own_status() {
        let err: Error = Box::new(ErrorStatus::new(StatusCode::BAD_REQUEST, "no authority\n"));
        let rsp = response(&err, false);
        assert_eq!(rsp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(rsp.headers()[PROXY_ERROR_HEADER], "no authority ");
    }
}
