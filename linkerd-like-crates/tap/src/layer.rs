//! The tap middleware: `TapLayer` + `TapService` + `ResponseFuture` + `TapBody`.

use crate::filter::{Facts, Labels, Truth};
use crate::registry::{Seen, Taps};
use bytes::Buf;
use conduit_api::tap::tap_event::{self, Direction};
use conduit_api::tap::TapEvent;
use conduit_metrics::{RouteLabel, ServerIdLabel};
use http_body::{Body, Frame, SizeHint};
use pin_project::{pin_project, pinned_drop};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::time::Instant;

/// What a tap layer knows of the connection its requests come on.
#[derive(Clone, Debug)]
pub struct Peers {
    /// Which side of the proxy.
    pub direction: Direction,
    /// The client.
    pub source: SocketAddr,
    /// The client's mTLS identity (inbound).
    pub source_identity: Option<Arc<str>>,
    /// The client workload's labels, when known.
    pub source_labels: Option<Arc<Labels>>,
    /// Where requests go: the original destination, or (explicit mode) the listener.
    pub destination: SocketAddr,
    /// The destination's identity: ours, inbound.
    pub destination_identity: Option<Arc<str>>,
    /// The destination workload's labels, when known.
    pub destination_labels: Option<Arc<Labels>>,
    /// Whether the connection is mTLS (inbound).
    pub tls: bool,
}

pub use conduit_metrics::DestinationLabels;

/// The address of the endpoint a response came from. A router that balances puts it in the
/// response's extensions: an outbound request's destination is then the endpoint picked,
/// not the address the application dialled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointAddr(pub SocketAddr);

/// Taps each request of one connection.
#[derive(Clone, Debug)]
pub struct TapLayer {
    taps: Taps,
    peers: Arc<Peers>,
}

/// The service built by [`TapLayer`].
#[derive(Clone, Debug)]
pub struct TapService<S> {
    inner: S,
    taps: Taps,
    peers: Arc<Peers>,
}

/// A tapped request, between its init and its response.
#[derive(Debug)]
struct Tapped {
    seen: Vec<Seen>,
    peers: Arc<Peers>,
    request: RequestHead,
    started: Instant,
}

/// What a request's init event says, kept for taps that decide at response time.
#[derive(Debug)]
struct RequestHead {
    method: http::Method,
    scheme: String,
    authority: String,
    path: String,
}

/// The future of a tapped service's response.
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    tapped: Option<Box<Tapped>>,
}

/// A response body that reports its end to the taps that took its request.
#[pin_project(PinnedDrop)]
#[derive(Debug)]
pub struct TapBody<B> {
    #[pin]
    inner: B,
    ending: Option<Box<Ending>>,
}

#[derive(Debug)]
struct Ending {
    seen: Vec<Seen>,
    template: TapEvent,
    started: Instant,
    response_started: Instant,
    bytes: u64,
    grpc_status: Option<u32>,
}

impl TapLayer {
    /// Taps requests of a connection between `peers` into `taps`.
    pub fn new(taps: Taps, peers: Peers) -> Self {
        Self {
            taps,
            peers: Arc::new(peers),
        }
    }
}

impl<S> tower_layer::Layer<S> for TapLayer {
    type Service = TapService<S>;

    fn layer(&self, inner: S) -> TapService<S> {
        TapService {
            inner,
            taps: self.taps.clone(),
            peers: self.peers.clone(),
        }
    }
}

impl<S> TapService<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> tower_service::Service<http::Request<B>> for TapService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Error: std::fmt::Display,
    RB: Body,
{
    type Response = http::Response<TapBody<RB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let tapped = if self.taps.is_active() {
            tap_request(&self.taps, &self.peers, &req)
        } else {
            None
        };
        ResponseFuture {
            inner: self.inner.call(req),
            tapped,
        }
    }
}

fn tap_request<B>(taps: &Taps, peers: &Arc<Peers>, req: &http::Request<B>) -> Option<Box<Tapped>> {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or_default();
    let facts = Facts {
        source: peers.source,
        destination: peers.destination,
        method: req.method(),
        authority: Some(authority),
        path: req.uri().path(),
        source_labels: peers.source_labels.as_deref(),
        destination_labels: peers.destination_labels.as_deref(),
        route: None,
    };
    let mut seen = taps.inspect(&facts);
    if seen.is_empty() {
        return None;
    }
    let request = RequestHead {
        method: req.method().clone(),
        scheme: req
            .uri()
            .scheme_str()
            .unwrap_or(if peers.tls { "https" } else { "http" })
            .to_string(),
        authority: authority.to_string(),
        path: req.uri().path().to_string(),
    };
    let template = template(peers, &Learned::default());
    for s in &mut seen {
        if let Seen::Taken { tap, id, lost } = s {
            *lost = !tap.send(request.init(&template, *id));
        }
    }
    Some(Box::new(Tapped {
        seen,
        peers: peers.clone(),
        request,
        started: Instant::now(),
    }))
}

impl RequestHead {
    fn init(&self, template: &TapEvent, id: u64) -> TapEvent {
        with_event(
            template,
            tap_event::Event::RequestInit(tap_event::RequestInit {
                id,
                method: self.method.to_string(),
                scheme: self.scheme.clone(),
                authority: self.authority.clone(),
                path: self.path.clone(),
            }),
        )
    }
}

/// The parts of every event of a connection, the route and the server's identity (known at
/// response time) aside.
/// What a response tells of its request's destination, beyond what the connection knew.
#[derive(Debug, Default)]
struct Learned {
    route: Option<Arc<str>>,
    server_id: Option<Arc<str>>,
    dst_labels: Option<Arc<Labels>>,
    endpoint: Option<SocketAddr>,
}

fn template(peers: &Peers, learned: &Learned) -> TapEvent {
    let route = learned.route.as_deref();
    let server_id = learned.server_id.as_deref();
    let dst_labels = learned.dst_labels.as_deref();
    let peer = |addr: SocketAddr, id: Option<&str>, labels: Option<&Labels>| tap_event::Peer {
        addr: addr.to_string(),
        identity: id.unwrap_or_default().to_string(),
        labels: labels
            .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    };
    let dst_id = server_id.or(peers.destination_identity.as_deref());
    TapEvent {
        source: Some(peer(
            peers.source,
            peers.source_identity.as_deref(),
            peers.source_labels.as_deref(),
        )),
        destination: Some(peer(
            learned.endpoint.unwrap_or(peers.destination),
            dst_id,
            dst_labels.or(peers.destination_labels.as_deref()),
        )),
        proxy_direction: peers.direction as i32,
        tls: peers.tls || server_id.is_some(),
        route: route.unwrap_or_default().to_string(),
        proxy: String::new(),
        event: None,
    }
}

fn with_event(template: &TapEvent, event: tap_event::Event) -> TapEvent {
    let mut e = template.clone();
    e.event = Some(event);
    e
}

fn duration(d: std::time::Duration) -> Option<prost_types::Duration> {
    prost_types::Duration::try_from(d).ok()
}

impl Tapped {
    /// Settles the taps that waited for the response's facts: those that now match take
    /// the request and get its init event, late but in order.
    fn decide(&mut self, route: Option<&str>, dst_labels: Option<&Labels>, template: &TapEvent) {
        let peers = &self.peers;
        let facts = Facts {
            source: peers.source,
            destination: peers.destination,
            method: &self.request.method,
            authority: Some(&self.request.authority),
            path: &self.request.path,
            source_labels: peers.source_labels.as_deref(),
            destination_labels: dst_labels.or(peers.destination_labels.as_deref()),
            route: Some(route),
        };
        let request = &self.request;
        self.seen = std::mem::take(&mut self.seen)
            .into_iter()
            .filter_map(|s| match s {
                Seen::Undecided(tap) => match tap.filter().eval(&facts) {
                    // What is still unknown will stay so: it does not match.
                    Truth::No | Truth::Unknown => None,
                    Truth::Yes => match tap.take_late() {
                        Some(Seen::Taken { tap, id, .. }) => {
                            let lost = !tap.send(request.init(template, id));
                            Some(Seen::Taken { tap, id, lost })
                        }
                        _ => None,
                    },
                },
                taken => Some(taken),
            })
            .collect();
    }
}

/// Sends `event(id)` to each tap still following its request.
fn send_all(seen: &mut [Seen], event: impl Fn(u64) -> TapEvent) {
    for s in seen {
        if let Seen::Taken {
            tap,
            id,
            lost: lost @ false,
        } = s
        {
            *lost = !tap.send(event(*id));
        }
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
    RB: Body,
    E: std::fmt::Display,
{
    type Output = Result<http::Response<TapBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let Some(mut tapped) = this.tapped.take() else {
            return Poll::Ready(result.map(|rsp| {
                rsp.map(|inner| TapBody {
                    inner,
                    ending: None,
                })
            }));
        };
        let now = Instant::now();
        let since_request = duration(now.saturating_duration_since(tapped.started));
        let rsp = match result {
            Ok(rsp) => rsp,
            Err(error) => {
                let template = template(&tapped.peers, &Learned::default());
                let message = error.to_string();
                send_all(&mut tapped.seen, |id| {
                    with_event(
                        &template,
                        tap_event::Event::ResponseEnd(tap_event::ResponseEnd {
                            id,
                            since_request_init: since_request,
                            since_response_init: None,
                            response_bytes: 0,
                            end: Some(tap_event::response_end::End::Error(message.clone())),
                        }),
                    )
                });
                return Poll::Ready(Err(error));
            }
        };
        let ext = rsp.extensions();
        let learned = Learned {
            route: ext.get::<RouteLabel>().map(|r| r.0.clone()),
            server_id: ext.get::<ServerIdLabel>().map(|s| s.0.clone()),
            dst_labels: ext.get::<DestinationLabels>().map(|l| l.0.clone()),
            endpoint: ext.get::<EndpointAddr>().map(|e| e.0),
        };
        let template = template(&tapped.peers, &learned);
        tapped.decide(
            learned.route.as_deref(),
            learned.dst_labels.as_deref(),
            &template,
        );
        let status = u32::from(rsp.status().as_u16());
        send_all(&mut tapped.seen, |id| {
            with_event(
                &template,
                tap_event::Event::ResponseInit(tap_event::ResponseInit {
                    id,
                    since_request_init: since_request,
                    http_status: status,
                }),
            )
        });
        let Tapped { seen, started, .. } = *tapped;
        let mut ending = (!seen.is_empty()).then(|| {
            Box::new(Ending {
                seen,
                // A trailers-only gRPC response has its status in the headers.
                grpc_status: grpc_status(rsp.headers()),
                template,
                started,
                response_started: now,
                bytes: 0,
            })
        });
        // An empty body may never be polled: it ends with its headers.
        if rsp.body().is_end_stream() {
            if let Some(ending) = ending.take() {
                ending.finish(None);
            }
        }
        Poll::Ready(Ok(rsp.map(|inner| TapBody { inner, ending })))
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

impl Ending {
    fn finish(mut self, error: Option<String>) {
        let now = Instant::now();
        let since_request = duration(now.saturating_duration_since(self.started));
        let since_response = duration(now.saturating_duration_since(self.response_started));
        let end = match (error, self.grpc_status) {
            (Some(e), _) => Some(tap_event::response_end::End::Error(e)),
            (None, Some(code)) => Some(tap_event::response_end::End::GrpcStatus(code)),
            (None, None) => None,
        };
        let (template, bytes) = (&self.template, self.bytes);
        send_all(&mut self.seen, |id| {
            with_event(
                template,
                tap_event::Event::ResponseEnd(tap_event::ResponseEnd {
                    id,
                    since_request_init: since_request,
                    since_response_init: since_response,
                    response_bytes: bytes,
                    end: end.clone(),
                }),
            )
        });
    }
}

impl<B: Body> Body for TapBody<B>
where
    B::Error: std::fmt::Display,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let Some(ending) = this.ending.as_mut() else {
            return Poll::Ready(frame);
        };
        let end = match &frame {
            None => Some(None),
            Some(Err(e)) => Some(Some(e.to_string())),
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    ending.bytes += data.remaining() as u64;
                }
                if let Some(trailers) = f.trailers_ref() {
                    ending.grpc_status = grpc_status(trailers).or(ending.grpc_status);
                }
                this.inner.is_end_stream().then_some(None)
            }
        };
        if let Some(error) = end {
            if let Some(ending) = this.ending.take() {
                ending.finish(error);
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
impl<B> PinnedDrop for TapBody<B> {
    fn drop(self: Pin<&mut Self>) {
        // Ended bodies have reported already: this one was cut off (the client went away).
        if let Some(ending) = self.project().ending.take() {
            ending.finish(Some("response body dropped before its end".to_string()));
        }
    }
}
