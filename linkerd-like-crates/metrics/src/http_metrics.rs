use crate::prom::{escape_label_value, EncodeLabels};
use crate::{
    Counter, DestinationLabels, Direction, Encoder, Family, HdrLatency, Histogram,
    ResponseSnapshot, ServerIdLabel, TlsLabel,
};
use http::HeaderValue;
use http_body::{Body, Frame, SizeHint};
use pin_project::{pin_project, pinned_drop};
use std::fmt::Write;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use tokio::time::{Duration, Instant};

/// Distinct authorities recorded per family before new ones are folded into `authority=""`.
/// Authorities come from clients' requests; without a bound, a client sending random `Host`
/// headers would grow the proxy's memory forever.
pub const MAX_AUTHORITIES: usize = 2_000;

/// What the HTTP metrics know of a connection's target.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpTarget {
    /// Inbound or outbound.
    pub direction: Direction,
    /// The address the traffic is headed for.
    pub target_addr: SocketAddr,
    /// The connection's TLS.
    pub tls: TlsLabel,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RequestLabels {
    target: HttpTarget,
    /// Kept as the header's bytes: cloning a `Host` value shares its buffer, and hashing
    /// bytes is one pass (an `Authority` hashes case-folded, byte by byte).
    authority: Option<HeaderValue>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ResponseLabels {
    request: RequestLabels,
    status: u16,
    success: bool,
    route: Option<Arc<str>>,
    /// The server's identity, when the response came over mTLS from another proxy.
    server_id: Option<Arc<str>>,
    /// The endpoint's labels, when the response came from a discovered endpoint.
    dst: Option<DestinationLabels>,
}

/// How the profile route's response classes classify a response, when one matched; without
/// it, a 5xx status or a non-zero `grpc-status` is a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseClass {
    /// Whether the response is a failure.
    pub failure: bool,
}

/// The profile route a response's request matched. A router puts it in the response's
/// extensions; the response metrics then carry a `route` label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteLabel(pub Arc<str>);

#[derive(Debug, Default)]
struct ResponseStats {
    total: Counter,
    latency: Histogram,
    /// The same latencies, exactly, for the controller's percentiles.
    hdr: HdrLatency,
}

/// HTTP request metrics, shared by every connection of a proxy.
#[derive(Clone, Debug, Default)]
pub struct HttpMetrics {
    requests: Arc<Family<RequestLabels, Counter>>,
    responses: Arc<Family<ResponseLabels, ResponseStats>>,
}

impl HttpMetrics {
    /// A layer recording into these metrics for one target.
    pub fn layer(&self, target: HttpTarget) -> HttpMetricsLayer {
        HttpMetricsLayer {
            metrics: self.clone(),
            target,
        }
    }

    /// Every response label set's count and latencies.
    pub fn snapshot(&self) -> Vec<ResponseSnapshot> {
        self.responses
            .snapshot()
            .into_iter()
            .map(|(labels, stats)| ResponseSnapshot {
                direction: labels.request.target.direction,
                authority: labels
                    .request
                    .authority
                    .as_ref()
                    .map(|a| String::from_utf8_lossy(a.as_bytes()).into_owned()),
                tls: match labels.server_id {
                    Some(id) => TlsLabel::Server(id),
                    None => labels.request.target.tls,
                },
                status: labels.status,
                success: labels.success,
                route: labels.route,
                dst: labels.dst,
                count: stats.total.get(),
                latency_us: stats.hdr.recorded(),
            })
            .collect()
    }

    /// Writes the HTTP families.
    pub fn encode(&self, enc: &mut Encoder) {
        enc.counters(
            "request_total",
            "Total count of HTTP requests.",
            &self.requests,
            |c| c,
        );
        enc.counters(
            "response_total",
            "Total count of HTTP responses.",
            &self.responses,
            |s| &s.total,
        );
        enc.histograms(
            "response_latency_ms",
            "Elapsed times between a request's headers being received and its response's headers being sent, in milliseconds.",
            &self.responses,
            |s| &s.latency,
        );
    }
}

impl RequestLabels {
    fn encode_with_tls(&self, tls: &TlsLabel, out: &mut String) {
        let _ = write!(out, "direction=\"{}\",authority=\"", self.target.direction);
        if let Some(a) = &self.authority {
            escape_label_value(&String::from_utf8_lossy(a.as_bytes()), out);
        }
        let _ = write!(out, "\",target_addr=\"{}\",", self.target.target_addr);
        tls.encode(out);
    }
}

impl EncodeLabels for RequestLabels {
    fn encode_labels(&self, out: &mut String) {
        self.encode_with_tls(&self.target.tls, out);
    }
}

impl EncodeLabels for ResponseLabels {
    fn encode_labels(&self, out: &mut String) {
        match &self.server_id {
            Some(id) => self
                .request
                .encode_with_tls(&TlsLabel::Server(id.clone()), out),
            None => self.request.encode_labels(out),
        }
        let class = if self.success { "success" } else { "failure" };
        let _ = write!(
            out,
            ",status_code=\"{}\",classification=\"{class}\"",
            self.status
        );
        if let Some(route) = &self.route {
            out.push_str(",route=\"");
            escape_label_value(route, out);
            out.push('"');
        }
        if let Some(dst) = &self.dst {
            dst.encode(out);
        }
    }
}

/// Records [`HttpMetrics`] for the requests through a service.
#[derive(Clone, Debug)]
pub struct HttpMetricsLayer {
    metrics: HttpMetrics,
    target: HttpTarget,
}

impl<S> tower_layer::Layer<S> for HttpMetricsLayer {
    type Service = HttpMetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        HttpMetricsService {
            inner,
            recorder: Arc::new(Recorder {
                metrics: self.metrics.clone(),
                target: self.target.clone(),
                last: Mutex::new(None),
            }),
        }
    }
}

/// A service that records HTTP metrics; see [`HttpMetricsLayer`].
///
/// Each service made by the layer (in a proxy, one per connection) remembers the metric
/// handles of the last authority it saw, so that a connection's run of requests to one
/// authority records without hashing label sets or locking the shared families.
#[derive(Clone, Debug)]
pub struct HttpMetricsService<S> {
    inner: S,
    recorder: Arc<Recorder>,
}

/// A service's target and the handles it used last.
#[derive(Debug)]
struct Recorder {
    metrics: HttpMetrics,
    target: HttpTarget,
    last: Mutex<Option<Arc<Handles>>>,
}

/// The metrics of one request label set, and of the responses seen for it.
#[derive(Debug)]
struct Handles {
    request: RequestLabels,
    requests: Arc<Counter>,
    /// By status, success and route; a handful at most, bounded by [`MAX_CACHED_RESPONSES`].
    responses: Mutex<Vec<CachedResponse>>,
}

/// A response's own labels: status, success, route and server identity.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ResponseKey {
    status: u16,
    success: bool,
    route: Option<Arc<str>>,
    server_id: Option<Arc<str>>,
    dst: Option<DestinationLabels>,
}

/// A response's labels and their metrics.
type CachedResponse = (ResponseKey, Arc<ResponseStats>);

/// Response label sets a [`Handles`] remembers; rarer ones go to the family each time.
const MAX_CACHED_RESPONSES: usize = 8;

impl Recorder {
    /// Counts a request with this authority and returns its label set's handles.
    fn request(&self, authority: Option<HeaderValue>) -> Arc<Handles> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(handles) = last.as_ref() {
            if handles.request.authority == authority {
                handles.requests.incr();
                return handles.clone();
            }
        }
        // Kept in its own allocation: a value parsed by hyper is a slice of the connection's
        // read buffer, and holding it would keep that whole buffer alive (hyper would then
        // allocate another for every later request head), per connection.
        let authority = authority.and_then(|a| HeaderValue::from_bytes(a.as_bytes()).ok());
        let mut request = RequestLabels {
            target: self.target.clone(),
            authority,
        };
        let family = &self.metrics.requests;
        let requests = match family.get_or_create_within(&request, MAX_AUTHORITIES) {
            Some(counter) => counter,
            None => {
                request.authority = None;
                family.get_or_create(&request)
            }
        };
        requests.incr();
        let handles = Arc::new(Handles {
            request,
            requests,
            responses: Mutex::new(Vec::new()),
        });
        *last = Some(handles.clone());
        handles
    }
}

impl Handles {
    /// The response metrics for `key`.
    fn response(&self, metrics: &HttpMetrics, key: ResponseKey) -> Arc<ResponseStats> {
        let mut cached = self
            .responses
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, stats)) = cached.iter().find(|(k, _)| *k == key) {
            return stats.clone();
        }
        let labels = ResponseLabels {
            request: self.request.clone(),
            status: key.status,
            success: key.success,
            route: key.route.clone(),
            server_id: key.server_id.clone(),
            dst: key.dst.clone(),
        };
        // Bounded like requests: one authority's statuses make a handful of label sets.
        let responses = &metrics.responses;
        let stats = match responses.get_or_create_within(&labels, 4 * MAX_AUTHORITIES) {
            Some(stats) => stats,
            None => {
                let labels = ResponseLabels {
                    request: RequestLabels {
                        authority: None,
                        ..labels.request
                    },
                    ..labels
                };
                responses.get_or_create(&labels)
            }
        };
        if cached.len() < MAX_CACHED_RESPONSES {
            cached.push((key, stats.clone()));
        }
        stats
    }
}

impl<S> HttpMetricsService<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The request's authority: from the URI (HTTP/2, absolute-form) or the `Host` header.
fn authority_of<B>(req: &http::Request<B>) -> Option<HeaderValue> {
    match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(http::header::HOST).cloned(),
    }
}

impl<S, B, RB> tower_service::Service<http::Request<B>> for HttpMetricsService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
{
    type Response = http::Response<ResponseBody<RB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let handles = self.recorder.request(authority_of(&req));
        ResponseFuture {
            inner: self.inner.call(req),
            state: Some((self.recorder.clone(), handles, Instant::now())),
        }
    }
}

/// The response future of [`HttpMetricsService`].
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    state: Option<(Arc<Recorder>, Arc<Handles>, Instant)>,
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
{
    type Output = Result<http::Response<ResponseBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let rsp = ready!(this.inner.poll(cx))?;
        let pending = this.state.take().map(|(recorder, handles, start)| {
            let grpc_failed = grpc_failed(rsp.headers());
            let class = rsp.extensions().get::<ResponseClass>().map(|c| c.failure);
            Pending {
                recorder,
                handles,
                route: rsp.extensions().get::<RouteLabel>().map(|r| r.0.clone()),
                server_id: rsp.extensions().get::<ServerIdLabel>().map(|s| s.0.clone()),
                dst: rsp.extensions().get::<DestinationLabels>().cloned(),
                status: rsp.status().as_u16(),
                latency: start.elapsed(),
                failed: class
                    .unwrap_or(rsp.status().is_server_error() || grpc_failed == Some(true)),
                classified: class.is_some(),
            }
        });
        Poll::Ready(Ok(rsp.map(|inner| ResponseBody { inner, pending })))
    }
}

/// `Some(true)` when the headers or trailers carry a non-zero `grpc-status`.
fn grpc_failed(headers: &http::HeaderMap) -> Option<bool> {
    headers
        .get("grpc-status")
        .map(|v| v.as_bytes().trim_ascii() != b"0")
}

#[derive(Debug)]
struct Pending {
    recorder: Arc<Recorder>,
    handles: Arc<Handles>,
    route: Option<Arc<str>>,
    server_id: Option<Arc<str>>,
    dst: Option<DestinationLabels>,
    status: u16,
    latency: Duration,
    failed: bool,
    /// A route's class decided `failed`: the trailers do not change it (an error still does).
    classified: bool,
}

/// How a response's stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Ok,
    GrpcFailed,
    Error,
}

impl Pending {
    fn record(self, end: End) {
        let failed = match end {
            End::Ok => false,
            End::GrpcFailed => !self.classified,
            End::Error => true,
        };
        let success = !(self.failed || failed);
        let key = ResponseKey {
            status: self.status,
            success,
            route: self.route,
            server_id: self.server_id,
            dst: self.dst,
        };
        let stats = self.handles.response(&self.recorder.metrics, key);
        stats.total.incr();
        stats.latency.record(self.latency);
        stats.hdr.record(self.latency);
    }
}

/// A response body that records the response when its stream ends.
#[pin_project(PinnedDrop)]
#[derive(Debug)]
pub struct ResponseBody<B> {
    #[pin]
    inner: B,
    pending: Option<Pending>,
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let end = match &frame {
            None => Some(End::Ok),
            Some(Err(_)) => Some(End::Error),
            Some(Ok(f)) => match f.trailers_ref() {
                Some(trailers) if grpc_failed(trailers) == Some(true) => Some(End::GrpcFailed),
                Some(_) => Some(End::Ok),
                None if this.inner.is_end_stream() => Some(End::Ok),
                None => None,
            },
        };
        if let Some(end) = end {
            if let Some(p) = this.pending.take() {
                p.record(end);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[pinned_drop]
impl<B> PinnedDrop for ResponseBody<B> {
    fn drop(self: Pin<&mut Self>) {
        // A body dropped before its end (the client went away, or the server never read an
        // empty body) is classified by what its headers said.
        if let Some(p) = self.project().pending.take() {
            p.record(End::Ok);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use tower_layer::Layer;
    use tower_service::Service;
    use tower_test::mock;

    fn target() -> HttpTarget {
        HttpTarget {
            direction: Direction::Outbound,
            target_addr: "127.0.0.1:8080".parse().unwrap(),
            tls: TlsLabel::Disabled,
        }
    }

    fn text(m: &HttpMetrics) -> String {
        let mut enc = Encoder::default();
        m.encode(&mut enc);
        enc.finish()
    }

    const L: &str =
        r#"direction="outbound",authority="books:80",target_addr="127.0.0.1:8080",tls="disabled""#;

    #[tokio::test(start_paused = true)]
    async fn counts_requests_responses_and_latency() {
        let metrics = HttpMetrics::default();
        let (svc, mut handle) =
            mock::pair::<http::Request<()>, http::Response<Full<bytes::Bytes>>>();
        let mut svc = metrics.layer(target()).layer(svc);
        handle.allow(2);
        let req = http::Request::builder()
            .uri("/")
            .header("host", "books:80")
            .body(())
            .unwrap();
        std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
        let fut = svc.call(req);
        let (_, send) = handle.next_request().await.unwrap();
        tokio::time::advance(Duration::from_millis(3)).await;
        send.send_response(http::Response::new(Full::from("ok")));
        let rsp = fut.await.unwrap();
        rsp.into_body().collect().await.unwrap();

        let t = text(&metrics);
        assert!(t.contains(&format!("request_total{{{L}}} 1\n")), "{t}");
        let rl = format!(r#"{L},status_code="200",classification="success""#);
        assert!(t.contains(&format!("response_total{{{rl}}} 1\n")), "{t}");
        assert!(
            t.contains(&format!("response_latency_ms_bucket{{{rl},le=\"3\"}} 1\n")),
            "{t}"
        );
        assert!(
            t.contains(&format!("response_latency_ms_bucket{{{rl},le=\"2\"}} 0\n")),
            "{t}"
        );
    }

    #[tokio::test]
    async fn a_remembered_authority_does_not_hold_the_read_buffer_it_came_from() {
        let metrics = HttpMetrics::default();
        let (svc, mut handle) =
            mock::pair::<http::Request<()>, http::Response<Full<bytes::Bytes>>>();
        let mut svc = metrics.layer(target()).layer(svc);
        handle.allow(1);
        // As hyper parses a head: the header value is a slice of the connection's buffer.
        let buffer = bytes::Bytes::from(b"GET / HTTP/1.1\r\nhost: books:80\r\n\r\n".to_vec());
        let host = HeaderValue::from_maybe_shared(buffer.slice(22..30)).unwrap();
        assert_eq!(host, "books:80");
        let mut req = http::Request::builder().uri("/").body(()).unwrap();
        req.headers_mut().insert(http::header::HOST, host);
        std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
        let fut = svc.call(req);
        let (req, send) = handle.next_request().await.unwrap();
        drop(req);
        send.send_response(http::Response::new(Full::from("ok")));
        fut.await.unwrap().into_body().collect().await.unwrap();
        assert!(text(&metrics).contains(r#"authority="books:80""#));
        assert!(
            buffer.is_unique(),
            "the metrics still hold the request's buffer"
        );
    }

    #[tokio::test]
    async fn server_errors_and_grpc_trailers_are_failures() {
        let metrics = HttpMetrics::default();
        let (svc, mut handle) = mock::pair::<http::Request<()>, http::Response<_>>();
        let mut svc = metrics.layer(target()).layer(svc);
        handle.allow(2);
        for (status, frames) in [
            (503, vec![]),
            (200, {
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", "14".parse().unwrap());
                vec![Frame::data("x".into()), Frame::trailers(trailers)]
            }),
        ] {
            let body = Frames(frames.into());
            let rsp = http::Response::builder().status(status).body(body).unwrap();
            exchange(&mut svc, &mut handle, Duration::ZERO, rsp).await;
        }
        let t = text(&metrics);
        for status in ["503", "200"] {
            let rl = format!(r#"{L},status_code="{status}",classification="failure""#);
            assert!(t.contains(&format!("response_total{{{rl}}} 1\n")), "{t}");
        }
        assert!(!t.contains("success"), "{t}");
    }

    #[tokio::test]
    async fn random_authorities_cannot_grow_memory_without_bound() {
        let metrics = HttpMetrics::default();
        let (svc, mut handle) =
            mock::pair::<http::Request<()>, http::Response<Full<bytes::Bytes>>>();
        let mut svc = metrics.layer(target()).layer(svc);
        handle.allow(MAX_AUTHORITIES as u64 + 10);
        for i in 0..MAX_AUTHORITIES + 10 {
            let req = http::Request::builder()
                .uri(format!("http://host-{i}:80/"))
                .body(())
                .unwrap();
            std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
            let fut = svc.call(req);
            let (_, send) = handle.next_request().await.unwrap();
            send.send_response(http::Response::new(Full::from("ok")));
            drop(fut.await.unwrap());
        }
        assert_eq!(metrics.requests.len(), MAX_AUTHORITIES + 1);
        let t = text(&metrics);
        assert!(
            t.contains("authority=\"\""),
            "overflow goes to an empty authority"
        );
    }

    #[tokio::test]
    async fn one_service_switching_authorities_and_statuses_counts_each() {
        let metrics = HttpMetrics::default();
        let (svc, mut handle) =
            mock::pair::<http::Request<()>, http::Response<Full<bytes::Bytes>>>();
        let svc = metrics.layer(target()).layer(svc);
        let sequence = [
            ("a:80", 200),
            ("a:80", 200),
            ("b:80", 503),
            ("a:80", 200),
            ("a:80", 404),
            ("b:80", 503),
        ];
        handle.allow(sequence.len() as u64);
        for (authority, status) in sequence {
            let req = http::Request::builder()
                .uri("/")
                .header("host", authority)
                .body(())
                .unwrap();
            // A clone per request, as hyper makes: clones share the service's handles.
            let mut one = svc.clone();
            std::future::poll_fn(|cx| one.poll_ready(cx)).await.unwrap();
            let fut = one.call(req);
            let (_, send) = handle.next_request().await.unwrap();
            let rsp = http::Response::builder().status(status);
            send.send_response(rsp.body(Full::from("x")).unwrap());
            fut.await.unwrap().into_body().collect().await.unwrap();
        }
        let t = text(&metrics);
        let labels = |authority: &str| {
            format!(
                r#"direction="outbound",authority="{authority}",target_addr="127.0.0.1:8080",tls="disabled""#
            )
        };
        for (authority, count) in [("a:80", 4), ("b:80", 2)] {
            let line = format!("request_total{{{}}} {count}\n", labels(authority));
            assert!(t.contains(&line), "{line} in {t}");
        }
        for (authority, status, class, count) in [
            ("a:80", 200, "success", 3),
            ("a:80", 404, "success", 1),
            ("b:80", 503, "failure", 2),
        ] {
            let line = format!(
                "response_total{{{},status_code=\"{status}\",classification=\"{class}\"}} {count}\n",
                labels(authority)
            );
            assert!(t.contains(&line), "{line} in {t}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn endpoint_labels_and_exact_latencies_reach_text_and_snapshot() {
        let metrics = HttpMetrics::default();
        let (svc, mut handle) =
            mock::pair::<http::Request<()>, http::Response<Full<bytes::Bytes>>>();
        let mut svc = metrics.layer(target()).layer(svc);
        let dst = DestinationLabels(Arc::new(
            [("service", "books"), ("pod", "books-0")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
        ));
        handle.allow(3);
        for ms in [7, 7, 250] {
            let mut rsp = http::Response::new(Full::from("ok"));
            rsp.extensions_mut().insert(dst.clone());
            exchange(&mut svc, &mut handle, Duration::from_millis(ms), rsp).await;
        }
        let t = text(&metrics);
        let rl = format!(
            r#"{L},status_code="200",classification="success",dst_pod="books-0",dst_service="books""#
        );
        assert!(t.contains(&format!("response_total{{{rl}}} 3\n")), "{t}");

        let snap = metrics.snapshot();
        assert_eq!(snap.len(), 1);
        let s = &snap[0];
        assert_eq!((s.count, s.status, s.success), (3, 200, true));
        assert_eq!(s.dst.as_ref(), Some(&dst));
        assert_eq!(s.authority.as_deref(), Some("books:80"));
        // Two buckets, each within 1% of the latency recorded.
        assert_eq!(s.latency_us.len(), 2, "{:?}", s.latency_us);
        let (v, n) = s.latency_us[0];
        assert_eq!(n, 2);
        assert!((7_000..=7_070).contains(&v), "{v}");
        let (v, n) = s.latency_us[1];
        assert_eq!(n, 1);
        assert!((250_000..=252_500).contains(&v), "{v}");
    }

    #[tokio::test]
    async fn a_route_class_decides_over_the_status_and_trailers_but_not_errors() {
        let metrics = HttpMetrics::default();
        let (svc, mut handle) = mock::pair::<http::Request<()>, http::Response<_>>();
        let mut svc = metrics.layer(target()).layer(svc);
        let grpc_unavailable = || {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", "14".parse().unwrap());
            vec![Frame::trailers(trailers)]
        };
        let cases = [
            // A 500 the route calls a success.
            (500, Some(false), vec![]),
            // A 200 the route calls a failure.
            (201, Some(true), vec![]),
            // A class that says success is not overruled by trailers.
            (202, Some(false), grpc_unavailable()),
            // Without a class, the default.
            (203, None, grpc_unavailable()),
        ];
        handle.allow(cases.len() as u64);
        for (status, class, frames) in cases {
            let mut rsp = http::Response::builder()
                .status(status)
                .body(Frames(frames.into()))
                .unwrap();
            if let Some(failure) = class {
                rsp.extensions_mut().insert(ResponseClass { failure });
            }
            exchange(&mut svc, &mut handle, Duration::ZERO, rsp).await;
        }
        let t = text(&metrics);
        for (status, class) in [
            (500, "success"),
            (201, "failure"),
            (202, "success"),
            (203, "failure"),
        ] {
            let rl = format!(r#"{L},status_code="{status}",classification="{class}""#);
            assert!(t.contains(&format!("response_total{{{rl}}} 1\n")), "{t}");
        }
    }

    type Mocked<B> = mock::Mock<http::Request<()>, http::Response<B>>;

    /// A GET of `http://books:80/` through `svc`, answered with `rsp` after `after` (of
    /// paused time), its body read to the end.
    async fn exchange<B>(
        svc: &mut HttpMetricsService<Mocked<B>>,
        handle: &mut mock::Handle<http::Request<()>, http::Response<B>>,
        after: Duration,
        rsp: http::Response<B>,
    ) where
        B: Body<Data = bytes::Bytes>,
        B::Error: std::fmt::Debug,
    {
        let req = http::Request::builder()
            .uri("http://books:80/")
            .body(())
            .unwrap();
        std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
        let fut = svc.call(req);
        let (_, send) = handle.next_request().await.unwrap();
        if !after.is_zero() {
            tokio::time::advance(after).await;
        }
        send.send_response(rsp);
        fut.await.unwrap().into_body().collect().await.unwrap();
    }

    /// A body that yields the frames it was given.
    struct Frames(std::collections::VecDeque<Frame<bytes::Bytes>>);

    impl Body for Frames {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<bytes::Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }
}
