//! The watchers' wiring, proven at the kube client's HTTP boundary: a tower_test service
//! stands in for the API server and answers list and watch requests with real API JSON.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use conduit_control_destination::index::View;
use conduit_control_destination::Index;
use conduit_identity::Domain;
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::json;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

type Body = BoxBody<Bytes, std::io::Error>;
type Watch = mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>;

fn full(value: serde_json::Value) -> Body {
    Full::new(Bytes::from(value.to_string()))
        .map_err(|never| match never {})
        .boxed()
}

fn list(kind: &str, api_version: &str, items: Vec<serde_json::Value>) -> Body {
    full(json!({
        "kind": kind, "apiVersion": api_version,
        "metadata": {"resourceVersion": "100"},
        "items": items
    }))
}

fn watch_body() -> (Watch, Body) {
    let (tx, rx) = mpsc::channel(16);
    (tx, StreamBody::new(ReceiverStream::new(rx)).boxed())
}

fn service() -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "books", "namespace": "demo", "resourceVersion": "90"},
        "spec": {"clusterIP": "10.96.0.2", "ports": [{"name": "http", "port": 7001, "targetPort": 8080}]}
    })
}

fn slice(name: &str, ip: &str) -> serde_json::Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "demo", "resourceVersion": "95",
                     "labels": {"kubernetes.io/service-name": "books"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}]
    })
}

async fn until(index: &Index, want: &[&str]) {
    let mut rx = index
        .endpoints("books.demo.svc.cluster.local:7001")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let got: Vec<String> = match &rx.borrow_and_update().view {
                View::Known(set) => set.keys().map(ToString::to_string).collect(),
                View::Unknown => vec![],
            };
            if got == want {
                return;
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the index never showed {want:?}"));
}

#[tokio::test]
async fn watchers_list_then_follow_watch_events_into_the_index() {
    let (svc, mut api) =
        tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let index = Index::new("cluster.local");
    let synced = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let policies = conduit_control_policy::PolicyIndex::new(
        conduit_policy::DefaultPolicy::AllUnauthenticated,
        vec![],
    );
    let controller = tokio::spawn(conduit_control_k8s::run(
        client,
        index.clone(),
        policies.clone(),
        Domain::default(),
        synced.clone(),
    ));

    // The API server: answers each list, and holds each watch open.
    let (slice_watch_tx, mut slice_watch) = mpsc::channel::<Watch>(1);
    let server = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Some((req, send)) = api.next_request().await {
            let path = req.uri().path().to_string();
            let watching = req.uri().query().unwrap_or("").contains("watch=true");
            let body = if watching {
                let (tx, body) = watch_body();
                if path.ends_with("/endpointslices") {
                    let _ = slice_watch_tx.send(tx.clone()).await;
                }
                open.push(tx);
                body
            } else {
                match path.as_str() {
                    "/api/v1/services" => list("ServiceList", "v1", vec![service()]),
                    "/apis/discovery.k8s.io/v1/endpointslices" => list(
                        "EndpointSliceList",
                        "discovery.k8s.io/v1",
                        vec![slice("books-a", "10.1.0.1")],
                    ),
                    "/api/v1/pods" => list(
                        "PodList",
                        "v1",
                        vec![json!({
                            "apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": "books-0", "namespace": "demo", "resourceVersion": "80",
                                         "labels": {"app": "books"},
                                         "annotations": {"config.conduit.io/default-inbound-policy": "deny"}},
                            "spec": {"containers": [{"name": "books", "image": "books:1"}]}
                        })],
                    ),
                    "/apis/policy.conduit.io/v1alpha1/servers" => list(
                        "ServerList",
                        "policy.conduit.io/v1alpha1",
                        vec![json!({
                            "apiVersion": "policy.conduit.io/v1alpha1", "kind": "Server",
                            "metadata": {"name": "books-http", "namespace": "demo", "resourceVersion": "81"},
                            "spec": {"podSelector": {"app": "books"}, "port": 8080, "proxyProtocol": "HTTP/1"}
                        })],
                    ),
                    "/apis/policy.conduit.io/v1alpha1/authorizationpolicies" => list(
                        "AuthorizationPolicyList",
                        "policy.conduit.io/v1alpha1",
                        vec![json!({
                            "apiVersion": "policy.conduit.io/v1alpha1", "kind": "AuthorizationPolicy",
                            "metadata": {"name": "web-to-books", "namespace": "demo", "resourceVersion": "82"},
                            "spec": {"server": "books-http",
                                     "identities": ["web.demo.serviceaccount.identity.conduit.cluster.local"]}
                        })],
                    ),
                    "/apis/conduit.io/v1alpha1/serviceprofiles" => {
                        list("ServiceProfileList", "conduit.io/v1alpha1", vec![])
                    }
                    other => panic!("unexpected request for {other}"),
                }
            };
            send.send_response(http::Response::new(body));
        }
    });

    // From the lists; once all six are listed, the controller is ready.
    until(&index, &["10.1.0.1:8080"]).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while !synced.load(std::sync::atomic::Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("synced after every list");

    // The policy resources reached the policy index: the Server's port, and the pod's own
    // default (from its annotation) for every other port.
    let books = policies.watch("demo", "books-0", 8080).borrow().clone();
    assert_eq!(books.name, "books-http");
    assert_eq!(books.authorizations.len(), 1);
    assert_eq!(books.authorizations[0].name, "web-to-books");
    assert_eq!(
        policies.watch("demo", "books-0", 9090).borrow().name,
        "default:deny"
    );

    // A watch event: a second slice is added.
    let watch = tokio::time::timeout(Duration::from_secs(10), slice_watch.recv())
        .await
        .unwrap()
        .unwrap();
    let event = json!({"type": "ADDED", "object": slice("books-b", "10.1.0.2")});
    watch
        .send(Ok(Frame::data(Bytes::from(format!("{event}\n")))))
        .await
        .unwrap();
    until(&index, &["10.1.0.1:8080", "10.1.0.2:8080"]).await;

    // And a deletion.
    let event = json!({"type": "DELETED", "object": slice("books-a", "10.1.0.1")});
    watch
        .send(Ok(Frame::data(Bytes::from(format!("{event}\n")))))
        .await
        .unwrap();
    until(&index, &["10.1.0.2:8080"]).await;

    controller.abort();
    server.abort();
}
