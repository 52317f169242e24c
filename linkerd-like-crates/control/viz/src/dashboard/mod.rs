//! The web dashboard (the controller's `:8084`): one page, its script and its style, all
//! served from the binary (no page needs the internet), over a small JSON API that answers
//! from the same services as the gRPC APIs:
//!
//! | path | what |
//! |---|---|
//! | `/` | the page |
//! | `/app.js`, `/app.css` | its script and style |
//! | `/api/namespaces` | the namespaces the controller knows |
//! | `/api/stat?kind=&namespace=&name=&window=` | `Stat` ([`crate::json::stat`]) |
//! | `/api/routes?namespace=&service=&window=` | `Routes` |
//! | `/api/edges?namespace=&kind=&window=` | `Edges` |
//! | `/api/tap?namespace=&kind=&name=&to_kind=&to_name=&method=&path=&limit=&max_rps=` | a tap, as server-sent events (`data: <json>` per event) |
//!
//! A bad query is answered 400 with `{"error": "..."}`; an unknown path 404. Like Linkerd's,
//! the dashboard has no login of its own: expose it with `kubectl port-forward` (or
//! `conduit dashboard`), not a public load balancer.

mod query;

use crate::{StatsService, TapService};
use bytes::Bytes;
use conduit_api::stats::stats_server::Stats;
use conduit_api::tap::tap_by_resource_server::TapByResource;
use conduit_control_destination::Index;
use conduit_stack::drain;
use conduit_transport::Listener;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use query::Query;
use std::convert::Infallible;
use std::sync::Arc;
use tokio_stream::StreamExt;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");

/// Dashboard connections served at once.
const MAX_CONNECTIONS: usize = 256;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The dashboard's server.
#[derive(Clone, Debug)]
pub struct Dashboard {
    index: Arc<Index>,
    stats: StatsService,
    tap: TapService,
}

fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut rsp = Response::new(Full::new(body.into()).boxed_unsync());
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    // Everything is the controller's own: no frames, no scripts from elsewhere.
    rsp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    rsp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    rsp
}

fn json(value: &serde_json::Value) -> Response<Body> {
    full(StatusCode::OK, "application/json", value.to_string())
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    full(
        status,
        "application/json",
        serde_json::json!({ "error": message }).to_string(),
    )
}

fn status_error(s: &tonic::Status) -> Response<Body> {
    let code = match s.code() {
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::FailedPrecondition => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    };
    error(code, s.message())
}

impl Dashboard {
    /// A dashboard answering from these services.
    pub fn new(index: Arc<Index>, stats: StatsService, tap: TapService) -> Self {
        Self { index, stats, tap }
    }

    /// Serves `listener` until `drain` is signaled.
    pub async fn serve(self, listener: Listener, drain: drain::Watch) {
        conduit_transport::serve(listener, MAX_CONNECTIONS, drain, move |accepted, drain| {
            let dashboard = self.clone();
            async move {
                let svc = hyper::service::service_fn(move |req| {
                    let dashboard = dashboard.clone();
                    async move { Ok::<_, Infallible>(dashboard.handle(req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(accepted.stream), svc);
                let mut drain = drain;
                tokio::pin!(conn);
                // Tap streams never end by themselves: close at shutdown.
                tokio::select! {
                    res = conn.as_mut() => if let Err(error) = res {
                        tracing::debug!(%error, "dashboard connection failed");
                    },
                    () = drain.signaled() => {}
                }
            }
        })
        .await
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if req.method() != Method::GET {
            let mut rsp = error(StatusCode::METHOD_NOT_ALLOWED, "the dashboard only reads");
            rsp.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
            return rsp;
        }
        let q = Query::parse(req.uri().query());
        match req.uri().path() {
            "/" | "/index.html" => full(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML),
            "/app.js" => full(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS),
            "/app.css" => full(StatusCode::OK, "text/css; charset=utf-8", APP_CSS),
            "/api/namespaces" => {
                let namespaces: std::collections::BTreeSet<String> = self
                    .index
                    .services()
                    .into_iter()
                    .map(|k| k.namespace)
                    .collect();
                json(&serde_json::json!({ "namespaces": namespaces }))
            }
            "/api/stat" => match q.stat() {
                Err(e) => error(StatusCode::BAD_REQUEST, &e),
                Ok(r) => match self.stats.stat(tonic::Request::new(r)).await {
                    Ok(rsp) => json(&crate::json::stat(rsp.get_ref())),
                    Err(s) => status_error(&s),
                },
            },
            "/api/routes" => match q.routes() {
                Err(e) => error(StatusCode::BAD_REQUEST, &e),
                Ok(r) => {
                    let service =
                        format!("svc/{}", r.service.as_ref().map_or("", |s| s.name.as_str()));
                    match self.stats.routes(tonic::Request::new(r)).await {
                        Ok(rsp) => json(&crate::json::routes(rsp.get_ref(), &service)),
                        Err(s) => status_error(&s),
                    }
                }
            },
            "/api/edges" => match q.edges() {
                Err(e) => error(StatusCode::BAD_REQUEST, &e),
                Ok(r) => match self.stats.edges(tonic::Request::new(r)).await {
                    Ok(rsp) => json(&crate::json::edges(rsp.get_ref())),
                    Err(s) => status_error(&s),
                },
            },
            "/api/tap" => match q.tap() {
                Err(e) => error(StatusCode::BAD_REQUEST, &e),
                Ok(r) => match self.tap.watch(tonic::Request::new(r)).await {
                    Err(s) => status_error(&s),
                    Ok(rsp) => {
                        let events = rsp.into_inner().map(|event| {
                            let data = match event {
                                Ok(e) => crate::json::tap_event(&e),
                                Err(s) => serde_json::json!({ "error": s.message() }),
                            };
                            Ok::<_, Infallible>(Frame::data(Bytes::from(format!(
                                "data: {data}\n\n"
                            ))))
                        });
                        let mut rsp = Response::new(StreamBody::new(events).boxed_unsync());
                        rsp.headers_mut().insert(
                            header::CONTENT_TYPE,
                            header::HeaderValue::from_static("text/event-stream"),
                        );
                        rsp.headers_mut().insert(
                            header::CACHE_CONTROL,
                            header::HeaderValue::from_static("no-store"),
                        );
                        rsp
                    }
                },
            },
            _ => error(StatusCode::NOT_FOUND, "no such page"),
        }
    }
}
