use crate::cluster::{Cluster, Event};
use crate::crd::ServiceProfile;
use crate::policy::PolicyCluster;
use conduit_control_destination::Index;
use conduit_control_policy::{AuthorizationPolicy, PolicyIndex, Server};
use conduit_identity::Domain;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Boxed: Kubernetes objects are large, and the channel holds many.
enum Message {
    Service(Box<Event<Service>>),
    Slice(Box<Event<EndpointSlice>>),
    Pod(Box<Event<Pod>>),
    Profile(Box<Event<ServiceProfile>>),
    Server(Box<Event<Server>>),
    Authorization(Box<Event<AuthorizationPolicy>>),
}

/// Watches the cluster through `client` and keeps `index` (services, endpoints, profiles)
/// and `policies` (Servers, AuthorizationPolicies, pods' labels) up to date, until the task
/// is dropped. Each watcher retries with kube's default backoff; one owner applies every
/// event, so the reduction needs no locks. `synced` is set once every watcher has listed its
/// objects, so the indexes answer for the whole cluster.
pub async fn run(
    client: Client,
    index: Arc<Index>,
    policies: Arc<PolicyIndex>,
    identities: Domain,
    synced: Arc<AtomicBool>,
) {
    let (tx, mut rx) = mpsc::channel::<Message>(1024);
    let tasks = [
        tokio::spawn(follow(
            Api::<Service>::all(client.clone()),
            tx.clone(),
            Message::Service,
        )),
        tokio::spawn(follow(
            Api::<EndpointSlice>::all(client.clone()),
            tx.clone(),
            Message::Slice,
        )),
        tokio::spawn(follow(
            Api::<Pod>::all(client.clone()),
            tx.clone(),
            Message::Pod,
        )),
        tokio::spawn(follow(
            Api::<ServiceProfile>::all(client.clone()),
            tx.clone(),
            Message::Profile,
        )),
        tokio::spawn(follow(
            Api::<Server>::all(client.clone()),
            tx.clone(),
            Message::Server,
        )),
        tokio::spawn(follow(
            Api::<AuthorizationPolicy>::all(client),
            tx,
            Message::Authorization,
        )),
    ];
    let _abort = AbortAll(tasks);
    let mut cluster = Cluster::new(index, identities);
    let mut policy = PolicyCluster::new(policies);
    let mut listed = [false; 6];
    while let Some(message) = rx.recv().await {
        let (kind, done) = match &message {
            Message::Service(e) => (0, matches!(**e, Event::InitDone)),
            Message::Slice(e) => (1, matches!(**e, Event::InitDone)),
            Message::Pod(e) => (2, matches!(**e, Event::InitDone)),
            Message::Profile(e) => (3, matches!(**e, Event::InitDone)),
            Message::Server(e) => (4, matches!(**e, Event::InitDone)),
            Message::Authorization(e) => (5, matches!(**e, Event::InitDone)),
        };
        match message {
            Message::Service(e) => cluster.service(*e),
            Message::Slice(e) => cluster.slice(*e),
            Message::Pod(e) => {
                policy.pod(Event::as_ref(&e));
                cluster.pod(*e);
            }
            Message::Profile(e) => cluster.profile(*e),
            Message::Server(e) => policy.server(*e),
            Message::Authorization(e) => policy.authorization(*e),
        }
        if done && !listed[kind] {
            listed[kind] = true;
            if listed.iter().all(|l| *l) {
                tracing::info!("every watcher has listed the cluster");
                synced.store(true, Ordering::Release);
            }
        }
    }
}

struct AbortAll<const N: usize>([tokio::task::JoinHandle<()>; N]);

impl<const N: usize> Drop for AbortAll<N> {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

async fn follow<K>(api: Api<K>, tx: mpsc::Sender<Message>, wrap: fn(Box<Event<K>>) -> Message)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let kind = std::any::type_name::<K>();
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                if tx.send(wrap(Box::new(event.into()))).await.is_err() {
                    return;
                }
            }
            Err(error) => tracing::warn!(kind, %error, "watch failed; retrying"),
        }
    }
}
