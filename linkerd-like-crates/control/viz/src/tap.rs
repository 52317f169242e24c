//! The controller's `TapByResource.Watch`: finds a resource's meshed proxies, opens a
//! `Tap.Observe` on each, and merges their events into one stream.
//!
//! The request limit holds for the merged stream: once `limit` requests have been admitted
//! (their request-init events passed on), later requests' events are dropped, and the
//! stream ends when every admitted request has ended (or its proxy's stream has). A slow
//! reader slows the merge, which slows each proxy's stream, where the proxy drops events
//! rather than slow its traffic.

use crate::proxies::{self, Clients, Proxy};
use crate::resource::{Kind, Resource};
use conduit_api::tap as api;
use conduit_api::tap::r#match::{Label, Match as M, Seq};
use conduit_api::tap::tap_client::TapClient;
use conduit_api::tap::tap_event::Event;
use conduit_control_destination::Index;
use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// Events buffered between the proxies' streams and the caller.
const MERGE_BUFFER: usize = 1_000;

/// The most requests one watch may ask for (as each proxy allows).
const MAX_LIMIT: u32 = 10_000;

/// Serves `TapByResource`.
#[derive(Clone, Debug)]
pub struct TapService {
    index: Arc<Index>,
    clients: Clients,
}

impl TapService {
    /// Taps `index`'s meshed proxies through `clients`.
    pub fn new(index: Arc<Index>, clients: Clients) -> Self {
        Self { index, clients }
    }

    /// As a tonic service.
    pub fn into_server(self) -> api::tap_by_resource_server::TapByResourceServer<Self> {
        api::tap_by_resource_server::TapByResourceServer::new(self)
    }
}

fn label(key: &str, value: &str) -> api::Match {
    api::Match {
        r#match: Some(M::DestinationLabel(Label {
            key: key.into(),
            value: value.into(),
        })),
    }
}

/// `to` as a destination-label filter.
fn to_filter(to: &Resource) -> Option<api::Match> {
    let mut all = Vec::new();
    if let Some(ns) = &to.namespace {
        all.push(label("namespace", ns));
    }
    if let (Some(key), Some(name)) = (to.kind.label(), &to.name) {
        if to.kind != Kind::Namespace {
            all.push(label(key, name));
        }
    }
    (!all.is_empty()).then_some(api::Match {
        r#match: Some(M::All(Seq { matches: all })),
    })
}

/// The user's filter and `--to`'s, both.
fn filter(user: Option<api::Match>, to: Option<api::Match>) -> Option<api::Match> {
    match (user, to) {
        (Some(a), Some(b)) => Some(api::Match {
            r#match: Some(M::All(Seq {
                matches: vec![a, b],
            })),
        }),
        (a, b) => a.or(b),
    }
}

type EventStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<api::TapEvent, Status>> + Send>>;

#[tonic::async_trait]
impl api::tap_by_resource_server::TapByResource for TapService {
    type WatchStream = EventStream;

    async fn watch(
        &self,
        req: Request<api::WatchRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let req = req.into_inner();
        let invalid = |e: crate::resource::InvalidResource| Status::invalid_argument(e.to_string());
        let target = match &req.target {
            Some(t) => Resource::from_api(t, "target").map_err(invalid)?,
            None => return Err(Status::invalid_argument("target: which resource to tap")),
        };
        let to = req
            .to
            .as_ref()
            .map(|t| Resource::from_api(t, "to"))
            .transpose()
            .map_err(invalid)?;
        // Checked here, so that a bad filter is one error rather than one per proxy.
        conduit_tap::Match::from_api(req.r#match.clone())
            .map_err(|e| Status::invalid_argument(format!("match: {e}")))?;
        let proxies: Vec<Proxy> = proxies::meshed(&self.index)
            .into_iter()
            .filter(|p| p.is_of(&target))
            .collect();
        if proxies.is_empty() {
            return Err(Status::not_found(format!(
                "no meshed proxy is a {}{}{}",
                target.kind.as_str(),
                target
                    .name
                    .as_ref()
                    .map(|n| format!(" {n}"))
                    .unwrap_or_default(),
                target
                    .namespace
                    .as_ref()
                    .map(|n| format!(" in namespace {n}"))
                    .unwrap_or_default(),
            )));
        }
        let limit = match req.limit {
            0 => MAX_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        let observe = api::ObserveRequest {
            limit,
            max_rps: req.max_rps,
            r#match: filter(req.r#match, to.as_ref().and_then(to_filter)),
        };
        let (tx, rx) = mpsc::channel(MERGE_BUFFER);
        let mut streams = Vec::new();
        for proxy in &proxies {
            let channel = self
                .clients
                .channel(proxy)
                .map_err(|e| Status::failed_precondition(e.to_string()))?;
            streams.push((proxy.name(), TapClient::new(channel), observe.clone()));
        }
        tokio::spawn(merge(streams, limit, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Runs each proxy's tap, and passes events on within the watch's limit.
async fn merge(
    streams: Vec<(
        String,
        TapClient<tonic::transport::Channel>,
        api::ObserveRequest,
    )>,
    limit: u32,
    tx: mpsc::Sender<Result<api::TapEvent, Status>>,
) {
    let (events_tx, mut events) = mpsc::channel::<(usize, Result<api::TapEvent, Status>)>(64);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (name, mut client, observe)) in streams.into_iter().enumerate() {
        let events_tx = events_tx.clone();
        tasks.spawn(async move {
            let mut stream = match client.observe(observe).await {
                Ok(rsp) => rsp.into_inner(),
                Err(status) => {
                    let status =
                        Status::new(status.code(), format!("{name}: {}", status.message()));
                    let _ = events_tx.send((i, Err(status))).await;
                    return;
                }
            };
            loop {
                match stream.message().await {
                    Ok(Some(mut event)) => {
                        event.proxy = name.clone();
                        if events_tx.send((i, Ok(event))).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(status) => {
                        tracing::debug!(proxy = %name, %status, "tap: a proxy's stream failed");
                        return;
                    }
                }
            }
        });
    }
    drop(events_tx);
    let mut admitted = 0u32;
    let mut open: HashSet<(usize, u64)> = HashSet::new();
    let mut errors = 0usize;
    let proxies = tasks.len();
    while let Some((i, event)) = events.recv().await {
        let event = match event {
            Ok(event) => event,
            Err(status) => {
                // One proxy refusing is reported only if every proxy did.
                errors += 1;
                if errors == proxies {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                continue;
            }
        };
        let pass = match &event.event {
            Some(Event::RequestInit(init)) => {
                if admitted >= limit {
                    false
                } else {
                    admitted += 1;
                    open.insert((i, init.id));
                    true
                }
            }
            Some(Event::ResponseInit(r)) => open.contains(&(i, r.id)),
            Some(Event::ResponseEnd(r)) => open.remove(&(i, r.id)),
            None => false,
        };
        if pass && tx.send(Ok(event)).await.is_err() {
            return;
        }
        if admitted >= limit && open.is_empty() {
            return;
        }
    }
}
