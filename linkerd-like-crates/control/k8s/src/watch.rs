use crate::cluster::{Cluster, Event, IdentityConfig};
use crate::crd::ServiceProfile;
use conduit_control_destination::Index;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
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
/// so the reduction needs no locks.
pub async fn run(client: Client, index: Arc<Index>, identities: IdentityConfig) {
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
    while let Some(message) = rx.recv().await {
        match message {
            Message::Service(e) => cluster.service(*e),
            Message::Slice(e) => cluster.slice(*e),
            Message::Pod(e) => cluster.pod(*e),
            Message::Profile(e) => cluster.profile(*e),
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
