use crate::cluster::{Cluster, Event};
use crate::crd::ServiceProfile;
use conduit_control_destination::Index;
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
}

/// Watches the cluster through `client` and keeps `index` up to date, until the task is
/// dropped. Each watcher retries with kube's default backoff; one owner applies every event,
/// so the reduction needs no locks. `synced` is set once every watcher has listed its
/// objects, so the index answers for the whole cluster.
pub async fn run(client: Client, index: Arc<Index>, identities: Domain, synced: Arc<AtomicBool>) {
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
            Api::<ServiceProfile>::all(client),
            tx,
            Message::Profile,
        )),
    ];
    let _abort = AbortAll(tasks);
    let mut cluster = Cluster::new(index, identities);
    let mut listed = [false; 4];
    while let Some(message) = rx.recv().await {
        let (kind, done) = match &message {
            Message::Service(e) => (0, matches!(**e, Event::InitDone)),
            Message::Slice(e) => (1, matches!(**e, Event::InitDone)),
            Message::Pod(e) => (2, matches!(**e, Event::InitDone)),
            Message::Profile(e) => (3, matches!(**e, Event::InitDone)),
        };
        match message {
            Message::Service(e) => cluster.service(*e),
            Message::Slice(e) => cluster.slice(*e),
            Message::Pod(e) => cluster.pod(*e),
            Message::Profile(e) => cluster.profile(*e),
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
