//! The Kubernetes reduction with typed fixtures (Kubernetes' own JSON, parsed into
//! k8s-openapi types) applied as watch events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use conduit_control_destination::index::View;
use conduit_control_destination::model::ProtocolHint;
use conduit_control_destination::Index;
use conduit_control_k8s::cluster::Event;
use conduit_control_k8s::crd::ServiceProfile;
use conduit_control_k8s::Cluster;
use conduit_identity::Domain;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use std::sync::Arc;

const BOOKS: &str = "books.demo.svc.cluster.local:7001";

fn service() -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "books", "namespace": "demo"},
        "spec": {
            "clusterIP": "10.96.0.2", "clusterIPs": ["10.96.0.2"],
            "ports": [{"name": "http", "port": 7001, "targetPort": 8080, "protocol": "TCP"}]
        }
    }))
    .unwrap()
}

fn slice(name: &str, endpoints: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "demo", "labels": {"kubernetes.io/service-name": "books"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints
    }))
    .unwrap()
}

fn endpoint(
    ip: &str,
    pod: &str,
    ready: bool,
    serving: bool,
    terminating: bool,
) -> serde_json::Value {
    json!({
        "addresses": [ip],
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
        "targetRef": {"kind": "Pod", "name": pod, "namespace": "demo"}
    })
}

fn pod(name: &str, meshed: bool) -> Pod {
    let mut containers = vec![json!({"name": "app", "image": "books:1"})];
    if meshed {
        containers.push(json!({"name": "conduit-proxy", "image": "conduit-proxy:1"}));
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "demo",
            "labels": {"app": "books", "pod-template-hash": "5d9f"},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "books-5d9f",
                "uid": "1", "controller": true
            }]
        },
        "spec": {"serviceAccountName": "books", "containers": containers}
    }))
    .unwrap()
}

fn cluster() -> (Cluster, Arc<Index>) {
    let index = Index::new("cluster.local");
    (Cluster::new(index.clone(), Domain::default()), index)
}

fn endpoints(index: &Index) -> Vec<String> {
    let rx = index.endpoints(BOOKS).unwrap();
    let view = rx.borrow().view.clone();
    match view {
        View::Unknown => vec!["unknown".into()],
        View::Known(set) => set.keys().map(ToString::to_string).collect(),
    }
}

#[test]
fn ready_endpoints_are_used_and_not_ready_ones_are_not() {
    let (mut c, index) = cluster();
    c.service(Event::Apply(service()));
    c.slice(Event::Apply(slice(
        "books-abc",
        json!([
            endpoint("10.1.0.1", "books-1", true, true, false),
            endpoint("10.1.0.2", "books-2", false, false, false),
            endpoint("10.1.0.3", "books-3", false, true, true),
        ]),
    )));
    assert_eq!(
        endpoints(&index),
        ["10.1.0.1:8080"],
        "target port, ready only"
    );
    // By cluster IP too.
    let by_ip = index.endpoints("10.96.0.2:7001").unwrap();
    assert!(matches!(&by_ip.borrow().view, View::Known(s) if s.len() == 1));
}

#[test]
fn with_no_ready_endpoint_the_terminating_but_serving_ones_answer() {
    let (mut c, index) = cluster();
    c.service(Event::Apply(service()));
    c.slice(Event::Apply(slice(
        "books-abc",
        json!([
            endpoint("10.1.0.2", "books-2", false, false, false),
            endpoint("10.1.0.3", "books-3", false, true, true),
        ]),
    )));
    assert_eq!(endpoints(&index), ["10.1.0.3:8080"]);
}

#[test]
fn meshed_pods_give_their_identity_labels_and_http2_hint() {
    let (mut c, index) = cluster();
    c.pod(Event::Apply(pod("books-5d9f-x1", true)));
    c.pod(Event::Apply(pod("books-5d9f-x2", false)));
    c.service(Event::Apply(service()));
    c.slice(Event::Apply(slice(
        "books-abc",
        json!([
            endpoint("10.1.0.1", "books-5d9f-x1", true, true, false),
            endpoint("10.1.0.2", "books-5d9f-x2", true, true, false),
        ]),
    )));
    let rx = index.endpoints(BOOKS).unwrap();
    let View::Known(set) = rx.borrow().view.clone() else {
        panic!("known")
    };
    let meshed = &set[&"10.1.0.1:8080".parse().unwrap()];
    assert_eq!(
        meshed.identity.as_deref(),
        Some("books.demo.serviceaccount.identity.conduit.cluster.local")
    );
    assert_eq!(meshed.protocol, ProtocolHint::H2);
    assert_eq!(meshed.labels["pod"], "books-5d9f-x1");
    assert_eq!(
        meshed.labels["workload"], "books",
        "the ReplicaSet's hash is stripped"
    );
    assert_eq!(meshed.labels["namespace"], "demo");
    let plain = &set[&"10.1.0.2:8080".parse().unwrap()];
    assert_eq!(plain.identity, None);
    assert_eq!(plain.protocol, ProtocolHint::Unknown);

    // A pod injected later: its endpoint gains the identity.
    c.pod(Event::Apply(pod("books-5d9f-x2", true)));
    let View::Known(set) = rx.borrow().view.clone() else {
        panic!("known")
    };
    assert!(set[&"10.1.0.2:8080".parse().unwrap()].identity.is_some());
}

#[test]
fn slices_and_services_update_and_delete() {
    let (mut c, index) = cluster();
    c.service(Event::Apply(service()));
    let a = slice(
        "books-a",
        json!([endpoint("10.1.0.1", "p1", true, true, false)]),
    );
    let b = slice(
        "books-b",
        json!([endpoint("10.1.0.2", "p2", true, true, false)]),
    );
    c.slice(Event::Apply(a.clone()));
    c.slice(Event::Apply(b.clone()));
    assert_eq!(
        endpoints(&index),
        ["10.1.0.1:8080", "10.1.0.2:8080"],
        "slices combine"
    );
    c.slice(Event::Apply(slice(
        "books-a",
        json!([endpoint("10.1.0.9", "p9", true, true, false)]),
    )));
    assert_eq!(endpoints(&index), ["10.1.0.2:8080", "10.1.0.9:8080"]);
    c.slice(Event::Delete(b));
    assert_eq!(endpoints(&index), ["10.1.0.9:8080"]);
    c.service(Event::Delete(service()));
    assert_eq!(endpoints(&index), ["unknown"]);
}

#[test]
fn a_relist_replaces_state_without_a_gap() {
    let (mut c, index) = cluster();
    c.service(Event::Apply(service()));
    c.slice(Event::Apply(slice(
        "books-a",
        json!([endpoint("10.1.0.1", "p1", true, true, false)]),
    )));
    let mut rx = index.endpoints(BOOKS).unwrap();
    rx.borrow_and_update();
    // The watch restarts; meanwhile slice a was replaced by slice c.
    c.slice(Event::Init);
    c.slice(Event::InitApply(slice(
        "books-c",
        json!([endpoint("10.1.0.3", "p3", true, true, false)]),
    )));
    assert!(
        !rx.has_changed().unwrap(),
        "nothing applies until the relist is done"
    );
    c.slice(Event::InitDone);
    assert_eq!(endpoints(&index), ["10.1.0.3:8080"]);
    assert_eq!(
        rx.borrow_and_update().version,
        2,
        "one change, straight to the new state"
    );
}

#[test]
fn service_profiles_set_and_clear_the_profile() {
    let (mut c, index) = cluster();
    c.service(Event::Apply(service()));
    let sp: ServiceProfile = serde_json::from_value(json!({
        "apiVersion": "conduit.io/v1alpha1", "kind": "ServiceProfile",
        "metadata": {"name": "books.demo.svc.cluster.local", "namespace": "demo"},
        "spec": {"routes": [{"name": "GET /books/{id}", "condition": {"method": "GET", "pathRegex": "/books/\\d+"}, "timeout": "300ms"}]}
    }))
    .unwrap();
    c.profile(Event::Apply(sp.clone()));
    let rx = index.profile(BOOKS).unwrap();
    assert_eq!(rx.borrow().routes[0].name, "GET /books/{id}");
    assert_eq!(rx.borrow().routes[0].timeout_ms, 300);
    c.profile(Event::Delete(sp));
    assert!(rx.borrow().routes.is_empty());
}

#[test]
fn the_crd_yaml_in_deploy_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../deploy/crds.yaml");
    let generated = conduit_control_k8s::crd::crds_yaml().unwrap();
    if std::env::var_os("CONDUIT_UPDATE_CRDS").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "deploy/crds.yaml is stale: run `CONDUIT_UPDATE_CRDS=1 cargo test -p conduit-control-k8s`"
    );
    // Valid CRD documents, one per kind.
    let docs: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&generated)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let kinds: Vec<(String, String)> = docs
        .iter()
        .map(|doc| {
            assert_eq!(doc["kind"], "CustomResourceDefinition");
            (
                doc["spec"]["group"].as_str().unwrap().to_string(),
                doc["spec"]["names"]["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("conduit.io".to_string(), "ServiceProfile".to_string()),
            ("policy.conduit.io".to_string(), "Server".to_string()),
            (
                "policy.conduit.io".to_string(),
                "AuthorizationPolicy".to_string()
            ),
        ]
    );
}

fn with_ip(mut pod: Pod, ip: &str) -> Pod {
    pod.status = Some(serde_json::from_value(json!({"podIP": ip})).unwrap());
    pod
}

#[test]
fn meshed_pods_are_known_with_or_without_a_service() {
    let (mut c, index) = cluster();
    // A meshed client no service lists, an unmeshed pod, and a meshed pod without an IP yet.
    c.pod(Event::Apply(with_ip(pod("books-5d9f-a", true), "10.1.0.7")));
    c.pod(Event::Apply(with_ip(
        pod("books-5d9f-b", false),
        "10.1.0.8",
    )));
    c.pod(Event::Apply(pod("books-5d9f-c", true)));
    let pods = index.meshed_pods();
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_eq!(pods[0].ip.to_string(), "10.1.0.7");
    assert_eq!(
        pods[0].identity,
        "books.demo.serviceaccount.identity.conduit.cluster.local"
    );
    assert_eq!(pods[0].labels["workload"], "books", "the Deployment's name");
    assert_eq!(pods[0].labels["pod"], "books-5d9f-a");
    assert_eq!(pods[0].tap_port, 4190);

    // Deleted: gone. A relist brings back what is live.
    c.pod(Event::Delete(with_ip(
        pod("books-5d9f-a", true),
        "10.1.0.7",
    )));
    assert!(index.meshed_pods().is_empty());
    c.pod(Event::Init);
    c.pod(Event::InitApply(with_ip(
        pod("books-5d9f-d", true),
        "10.1.0.9",
    )));
    c.pod(Event::InitDone);
    let pods = index.meshed_pods();
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].labels["pod"], "books-5d9f-d");
}
