//! The Destination gRPC service: streams answered from the [`Index`].
//!
//! Each stream is a task that reads its name's watch and sends what changed since what it
//! last sent, through a small bounded channel. A slow client fills its own channel and its
//! task waits; meanwhile the watch keeps only the newest state, so when the client catches up
//! it gets one update to the latest state rather than the backlog. No stream waits on another.
//! The task ends when the client goes (the channel closes) or the controller shuts down.

use crate::index::{Delta, Index, Snapshot, View};
use crate::model::{Endpoint, ProtocolHint};
use conduit_api::destination as api;
use conduit_api::destination::destination_server::Destination;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// Updates a stream may have queued before its task waits for the client. Updates are made
/// lazily, one `add` of at most [`MAX_ADDS_PER_UPDATE`] endpoints at a time, so a stuck
/// stream holds at most this many messages, however large the service.
const STREAM_BUFFER: usize = 1;

/// Endpoints per `add` message, so that a large service never makes one huge message.
const MAX_ADDS_PER_UPDATE: usize = 100;

/// The Destination service.
#[derive(Clone, Debug)]
pub struct DestinationService {
    index: Arc<Index>,
}

impl DestinationService {
    /// Answers from `index`.
    pub fn new(index: Arc<Index>) -> Self {
        Self { index }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> api::destination_server::DestinationServer<Self> {
        api::destination_server::DestinationServer::new(self)
    }
}

#[tonic::async_trait]
impl Destination for DestinationService {
    type GetStream = ReceiverStream<Result<api::Update, Status>>;
    type GetProfileStream = ReceiverStream<Result<api::DestinationProfile, Status>>;

    async fn get(
        &self,
        request: Request<api::GetDestination>,
    ) -> Result<Response<Self::GetStream>, Status> {
        let path = request.into_inner().path;
        let rx = self
            .index
            .endpoints(&path)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (tx, out) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(stream_endpoints(rx, tx));
        Ok(Response::new(ReceiverStream::new(out)))
    }

    async fn get_profile(
        &self,
        request: Request<api::GetDestination>,
    ) -> Result<Response<Self::GetProfileStream>, Status> {
        let path = request.into_inner().path;
        let rx = self
            .index
            .profile(&path)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (tx, out) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(stream_profiles(rx, tx));
        Ok(Response::new(ReceiverStream::new(out)))
    }
}

async fn stream_endpoints(
    mut rx: watch::Receiver<Arc<Snapshot>>,
    tx: mpsc::Sender<Result<api::Update, Status>>,
) {
    let mut sent: Option<Arc<Snapshot>> = None;
    loop {
        let snapshot = rx.borrow_and_update().clone();
        for update in updates_iter(sent.as_deref(), &snapshot) {
            if tx.send(Ok(update)).await.is_err() {
                return;
            }
        }
        sent = Some(snapshot);
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            () = tx.closed() => return,
        }
    }
}

async fn stream_profiles(
    mut rx: watch::Receiver<Arc<api::DestinationProfile>>,
    tx: mpsc::Sender<Result<api::DestinationProfile, Status>>,
) {
    loop {
        let profile = rx.borrow_and_update().as_ref().clone();
        if tx.send(Ok(profile)).await.is_err() {
            return;
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            () = tx.closed() => return,
        }
    }
}

/// What a stream that last sent `sent` must send to reach `next`.
pub fn updates(sent: Option<&Snapshot>, next: &Snapshot) -> Vec<api::Update> {
    updates_iter(sent, next).collect()
}

/// [`updates`], made one message at a time as the stream takes them.
pub fn updates_iter<'a>(
    sent: Option<&'a Snapshot>,
    next: &'a Snapshot,
) -> Box<dyn Iterator<Item = api::Update> + Send + 'a> {
    use api::update::Update as U;
    let none = |exists| {
        Box::new(std::iter::once(api::Update {
            update: Some(U::NoEndpoints(api::NoEndpoints { exists })),
        })) as Box<dyn Iterator<Item = api::Update> + Send + 'a>
    };
    let next_set = match &next.view {
        View::Unknown => None,
        View::Known(set) => Some(set),
    };
    let Some(sent) = sent else {
        return match next_set {
            Some(set) if !set.is_empty() => adds(set.values()),
            Some(_) => none(true),
            None => none(false),
        };
    };
    if sent.version == next.version {
        return Box::new(std::iter::empty());
    }
    let sent_set = match &sent.view {
        View::Known(set) if !set.is_empty() => Some(set),
        _ => None,
    };
    match (sent_set, next_set) {
        // One step behind: the snapshot carries the change.
        (Some(_), Some(set)) if !set.is_empty() && next.version == sent.version + 1 => {
            match &next.delta {
                Some(delta) => Box::new(removes(&delta.removed).chain(adds(delta.added.iter()))),
                None => diff(sent_set, set),
            }
        }
        (_, Some(set)) if !set.is_empty() => diff(sent_set, set),
        // Nothing now: one message says so, whatever was sent before.
        (_, Some(_)) => none(true),
        (_, None) => none(false),
    }
}

fn diff<'a>(
    sent: Option<&'a crate::index::EndpointSet>,
    next: &'a crate::index::EndpointSet,
) -> Box<dyn Iterator<Item = api::Update> + Send + 'a> {
    match sent {
        None => adds(next.values()),
        Some(sent) => {
            let removed: Vec<std::net::SocketAddr> = Delta::removed(sent, next).collect();
            Box::new(removes(&removed).chain(adds(Delta::added(sent, next))))
        }
    }
}

fn removes(removed: &[std::net::SocketAddr]) -> impl Iterator<Item = api::Update> + Send + use<> {
    let update = (!removed.is_empty()).then(|| api::Update {
        update: Some(api::update::Update::Remove(api::AddrSet {
            addrs: removed.iter().map(|a| api::TcpAddress::from(*a)).collect(),
        })),
    });
    update.into_iter()
}

/// `add` messages of at most [`MAX_ADDS_PER_UPDATE`] endpoints, each made when asked for.
fn adds<'a>(
    endpoints: impl Iterator<Item = &'a Endpoint> + Send + 'a,
) -> Box<dyn Iterator<Item = api::Update> + Send + 'a> {
    let mut endpoints = endpoints.peekable();
    Box::new(std::iter::from_fn(move || {
        endpoints.peek()?;
        let addrs: Vec<api::WeightedAddr> = endpoints
            .by_ref()
            .take(MAX_ADDS_PER_UPDATE)
            .map(weighted_addr)
            .collect();
        Some(api::Update {
            update: Some(api::update::Update::Add(api::WeightedAddrSet {
                addrs,
                metric_labels: HashMap::new(),
            })),
        })
    }))
}

fn weighted_addr(endpoint: &Endpoint) -> api::WeightedAddr {
    use api::protocol_hint::Protocol;
    let protocol = match endpoint.protocol {
        ProtocolHint::Unknown => None,
        ProtocolHint::H2 => Some(Protocol::H2(api::protocol_hint::H2 {})),
        ProtocolHint::Opaque => Some(Protocol::Opaque(api::protocol_hint::Opaque {})),
    };
    api::WeightedAddr {
        addr: Some(endpoint.addr.into()),
        weight: endpoint.weight,
        metric_labels: endpoint
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        tls_identity: endpoint.identity.as_ref().map(|id| api::TlsIdentity {
            dns_like_identity: id.clone(),
        }),
        protocol_hint: match (protocol, endpoint.inbound_port) {
            (None, None) => None,
            (protocol, port) => Some(api::ProtocolHint {
                protocol,
                opaque_transport: port.map(|port| api::protocol_hint::OpaqueTransport {
                    inbound_port: port.into(),
                }),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Delta;
    use std::collections::BTreeMap;
    use std::net::SocketAddr;

    fn set(addrs: &[&str]) -> View {
        View::Known(Arc::new(
            addrs
                .iter()
                .map(|a| {
                    let a: SocketAddr = a.parse().unwrap();
                    (a, Endpoint::new(a))
                })
                .collect::<BTreeMap<_, _>>(),
        ))
    }

    fn snap(version: u64, view: View, delta: Option<Delta>) -> Snapshot {
        Snapshot {
            version,
            view,
            delta,
        }
    }

    /// Renders updates as `+a,b` / `-a` / `none(exists)` for comparison.
    fn render(updates: &[api::Update]) -> Vec<String> {
        use api::update::Update as U;
        updates
            .iter()
            .map(|u| match u.update.as_ref().unwrap() {
                U::Add(set) => format!(
                    "+{}",
                    set.addrs
                        .iter()
                        .map(|a| SocketAddr::try_from(a.addr.as_ref().unwrap())
                            .unwrap()
                            .to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                U::Remove(set) => format!(
                    "-{}",
                    set.addrs
                        .iter()
                        .map(|a| SocketAddr::try_from(a).unwrap().to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                U::NoEndpoints(n) => format!("none({})", n.exists),
            })
            .collect()
    }

    #[test]
    fn a_meshed_endpoint_names_its_proxys_inbound_port() {
        let mut meshed = Endpoint::new("10.1.0.7:5432".parse().unwrap());
        meshed.identity = Some("db.demo.serviceaccount.identity.conduit.cluster.local".into());
        meshed.inbound_port = Some(4143);
        let hint = weighted_addr(&meshed).protocol_hint.unwrap();
        assert_eq!(hint.protocol, None, "nothing else is hinted");
        assert_eq!(hint.opaque_transport.unwrap().inbound_port, 4143);
        let plain = Endpoint::new("10.1.0.8:5432".parse().unwrap());
        assert_eq!(weighted_addr(&plain).protocol_hint, None);
    }

    #[test]
    fn the_first_message_always_says_something() {
        let cases = [
            (set(&["1.1.1.1:80"]), "+1.1.1.1:80"),
            (set(&[]), "none(true)"),
            (View::Unknown, "none(false)"),
        ];
        for (view, want) in cases {
            assert_eq!(render(&updates(None, &snap(1, view, None))), [want]);
        }
    }

    #[test]
    fn a_stream_one_behind_sends_the_delta_and_one_further_behind_a_diff() {
        let a = snap(1, set(&["1.1.1.1:80", "2.2.2.2:80"]), None);
        let delta = Delta {
            added: vec![Endpoint::new("3.3.3.3:80".parse().unwrap())],
            removed: vec!["1.1.1.1:80".parse().unwrap()],
        };
        let b = snap(2, set(&["2.2.2.2:80", "3.3.3.3:80"]), Some(delta));
        assert_eq!(
            render(&updates(Some(&a), &b)),
            ["-1.1.1.1:80", "+3.3.3.3:80"]
        );
        // Skipped a version: the stream compares what it sent with the newest set.
        let c = snap(5, set(&["3.3.3.3:80", "4.4.4.4:80"]), None);
        assert_eq!(
            render(&updates(Some(&a), &c)),
            ["-1.1.1.1:80,2.2.2.2:80", "+3.3.3.3:80,4.4.4.4:80"]
        );
        assert!(updates(Some(&c), &c).is_empty());
    }

    #[test]
    fn emptiness_and_return_are_whole_messages() {
        let a = snap(1, set(&["1.1.1.1:80"]), None);
        let empty = snap(2, set(&[]), None);
        assert_eq!(render(&updates(Some(&a), &empty)), ["none(true)"]);
        let gone = snap(3, View::Unknown, None);
        assert_eq!(render(&updates(Some(&empty), &gone)), ["none(false)"]);
        // After "none", everything is added again: the proxy dropped all it had.
        let back = snap(4, set(&["1.1.1.1:80"]), None);
        assert_eq!(render(&updates(Some(&gone), &back)), ["+1.1.1.1:80"]);
    }

    #[test]
    fn large_sets_are_split_into_several_adds() {
        let addrs: Vec<String> = (0..2500)
            .map(|i| format!("10.0.{}.{}:80", i / 250, i % 250))
            .collect();
        let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let out = updates(None, &snap(1, set(&refs), None));
        assert_eq!(out.len(), 2500usize.div_ceil(MAX_ADDS_PER_UPDATE));
    }
}
