//! `conduit tap`: live requests of a resource, one line per event, as `linkerd viz tap`
//! prints them.

use super::{channel, Output, VizError};
use conduit_api::tap::r#match::{self, Match as M};
use conduit_api::tap::tap_by_resource_client::TapByResourceClient;
use conduit_api::tap::tap_event::{Event, Peer};
use conduit_api::tap::{Match, Resource, TapEvent, WatchRequest};
use conduit_control_viz::json::micros;
use std::fmt::Write as _;

/// What to tap.
#[derive(Clone, Debug, Default)]
pub struct TapArgs {
    /// Whose proxies.
    pub target: Resource,
    /// Only requests to this resource.
    pub to: Option<Resource>,
    /// Only this method.
    pub method: Option<String>,
    /// Only paths starting with this.
    pub path: Option<String>,
    /// Only this authority.
    pub authority: Option<String>,
    /// Requests per second at most (0: the proxies' maximum).
    pub max_rps: f64,
    /// Requests in all before the stream ends (0: the maximum).
    pub limit: u32,
}

fn http(m: r#match::http::Match) -> Match {
    Match {
        r#match: Some(M::Http(r#match::Http { r#match: Some(m) })),
    }
}

impl TapArgs {
    /// The filter the flags make.
    pub fn filter(&self) -> Option<Match> {
        use r#match::http::Match as H;
        let mut all = Vec::new();
        if let Some(m) = &self.method {
            all.push(http(H::Method(m.clone())));
        }
        if let Some(p) = &self.path {
            all.push(http(H::PathPrefix(p.clone())));
        }
        if let Some(a) = &self.authority {
            all.push(http(H::Authority(a.clone())));
        }
        match all.len() {
            0 => None,
            1 => all.pop(),
            _ => Some(Match {
                r#match: Some(M::All(r#match::Seq { matches: all })),
            }),
        }
    }
}

/// Opens a tap through the controller at `addr`.
pub async fn watch(addr: &str, args: &TapArgs) -> Result<tonic::Streaming<TapEvent>, VizError> {
    let mut client = TapByResourceClient::new(channel(addr)?);
    let rsp = client
        .watch(WatchRequest {
            target: Some(args.target.clone()),
            to: args.to.clone(),
            r#match: args.filter(),
            limit: args.limit,
            max_rps: args.max_rps,
        })
        .await
        .map_err(|s| VizError::controller(addr, s))?;
    Ok(rsp.into_inner())
}

fn pod(proxy: &str) -> &str {
    proxy.rsplit('/').next().unwrap_or(proxy)
}

/// The workload of a peer, `deploy/web`, when its labels say.
fn workload(p: Option<&Peer>) -> String {
    p.and_then(|p| p.labels.get("workload"))
        .map_or_else(|| "-".into(), |w| format!("deploy/{w}"))
}

/// The gRPC status code's name.
pub fn grpc_status_name(code: u32) -> String {
    format!("{:?}", tonic::Code::from(code as i32))
}

/// One event as a line (no newline), or as a JSON object for `-o json`.
pub fn render(e: &TapEvent, output: Output) -> String {
    let direction = conduit_control_viz::json::direction(e);
    let addr = |p: Option<&Peer>| p.map_or("-".to_string(), |p| p.addr.clone());
    if output == Output::Json {
        return conduit_control_viz::json::tap_event(e).to_string();
    }
    let mut line = String::new();
    let head = |kind: &str, id: u64, line: &mut String| {
        let _ = write!(
            line,
            "{kind} id={}:{id} proxy={direction} src={} dst={} tls={}",
            pod(&e.proxy),
            addr(e.source.as_ref()),
            addr(e.destination.as_ref()),
            e.tls
        );
    };
    match &e.event {
        Some(Event::RequestInit(r)) => {
            head("req", r.id, &mut line);
            let _ = write!(
                line,
                " :method={} :authority={} :path={}",
                r.method, r.authority, r.path
            );
        }
        Some(Event::ResponseInit(r)) => {
            head("rsp", r.id, &mut line);
            let _ = write!(
                line,
                " :status={} latency={}µs",
                r.http_status,
                micros(r.since_request_init)
            );
        }
        Some(Event::ResponseEnd(r)) => {
            head("end", r.id, &mut line);
            match &r.end {
                Some(conduit_api::tap::tap_event::response_end::End::GrpcStatus(code)) => {
                    let _ = write!(line, " grpc-status={}", grpc_status_name(*code));
                }
                Some(conduit_api::tap::tap_event::response_end::End::Error(err)) => {
                    let _ = write!(line, " error={err:?}");
                }
                None => {}
            }
            let _ = write!(
                line,
                " duration={}µs response-length={}B",
                micros(r.since_response_init),
                r.response_bytes
            );
        }
        None => line.push_str("unknown event"),
    }
    if output == Output::Wide {
        let _ = write!(
            line,
            " src_res={} dst_res={}",
            workload(e.source.as_ref()),
            workload(e.destination.as_ref())
        );
        if !e.route.is_empty() {
            let _ = write!(line, " route={:?}", e.route);
        }
    }
    line
}

/// Prints each event of a tap as it comes, until the stream ends (its limit) or `stop`
/// completes; returns the number of events printed.
pub async fn run(
    addr: &str,
    args: &TapArgs,
    output: Output,
    out: &mut (dyn std::io::Write + Send),
    stop: impl std::future::Future<Output = ()>,
) -> Result<u64, VizError> {
    let mut events = watch(addr, args).await?;
    let mut printed = 0u64;
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            () = &mut stop => return Ok(printed),
            event = events.message() => event,
        };
        match event {
            Ok(Some(event)) => {
                if writeln!(out, "{}", render(&event, output)).is_err() {
                    // stdout closed (`| head`): done.
                    return Ok(printed);
                }
                printed += 1;
            }
            Ok(None) => return Ok(printed),
            Err(status) => return Err(VizError::controller(addr, status)),
        }
    }
}
