//! The policy index from the file registry, and the gRPC stream a proxy reads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use conduit_api::policy as api;
use conduit_control_policy::{file, PolicyIndex, PolicyService};
use conduit_policy::DefaultPolicy;
use std::time::Duration;

const REGISTRY: &str = r#"
services:
  - name: books
    namespace: demo
    ports:
      - port: 7001
        endpoints:
          - address: 127.0.1.2:4143
            identity: books.demo.serviceaccount.identity.conduit.cluster.local
            labels: {pod: books-0, workload: books}
servers:
  - name: books-http
    namespace: demo
    spec: {podSelector: {workload: books}, port: 7001, proxyProtocol: HTTP/1}
authorizationPolicies:
  - name: books-callers
    namespace: demo
    spec: {server: books-http, identities: ["web.demo.serviceaccount.identity.conduit.cluster.local", "*.prod.serviceaccount.identity.conduit.cluster.local"]}
  - name: monitoring
    namespace: demo
    spec: {server: books-http, unauthenticated: true, networks: [{cidr: 10.0.0.0/8, except: [10.9.0.0/16]}]}
workloadDefaults:
  demo/books: deny
"#;

fn index() -> std::sync::Arc<PolicyIndex> {
    let index = PolicyIndex::new(
        DefaultPolicy::AllUnauthenticated,
        vec!["10.0.0.0/8".parse().unwrap()],
    );
    index.replace_all(file::parse(REGISTRY, "test.yaml").unwrap());
    index
}

#[test]
fn a_selected_port_gets_its_server_and_authorizations() {
    let index = index();
    let policy = index.watch("demo", "books-0", 7001).borrow().clone();
    assert_eq!(policy.name, "books-http");
    assert_eq!(policy.protocol, api::ProxyProtocol::Http1 as i32);
    let names: Vec<&str> = policy
        .authorizations
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["books-callers", "monitoring"]);
    // The proxy reads it back.
    let read = conduit_policy::ServerPolicy::from_api(&policy).unwrap();
    assert_eq!(read.authorizations.len(), 2);
}

#[test]
fn other_ports_get_the_workloads_default_and_unknown_pods_the_clusters() {
    let index = index();
    assert_eq!(
        index.watch("demo", "books-0", 9090).borrow().name,
        "default:deny"
    );
    let other = index.watch("demo", "web-0", 7001).borrow().clone();
    assert_eq!(other.name, "default:all-unauthenticated");
    assert_eq!(other.authorizations.len(), 1);
}

#[test]
fn bad_policy_files_say_what_is_wrong() {
    let cases = [
        (
            REGISTRY.replace("proxyProtocol: HTTP/1", "proxyProtocol: http"),
            "proxyProtocol \"http\"",
        ),
        (
            REGISTRY.replace(
                "server: books-http, identities",
                "server: book-http, identities",
            ),
            "names server book-http",
        ),
        (
            REGISTRY.replace("demo/books: deny", "demo/books: open"),
            "workloadDefaults demo/books",
        ),
        (
            REGISTRY.replace("cidr: 10.0.0.0/8", "cidr: 10.0.0.0/40"),
            "authorization policy demo/monitoring",
        ),
        (
            REGISTRY.replace("unauthenticated: true, ", ""),
            "list identities",
        ),
        (REGISTRY.replace("\"*.prod", "\"prod.*"), "books-callers"),
    ];
    for (text, want) in cases {
        let err = file::parse(&text, "test.yaml").unwrap_err().to_string();
        assert!(err.contains(want), "{want}: {err}");
    }
}

#[tokio::test]
async fn proxies_get_the_policy_then_each_change_over_grpc() {
    let index = index();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(PolicyService::new(index.clone()).into_server())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let mut client = api::inbound_policies_client::InboundPoliciesClient::new(channel);
    let mut stream = client
        .watch_port(api::PortRequest {
            namespace: "demo".into(),
            pod: "books-0".into(),
            port: 7001,
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.name, "books-http");

    index.replace_all(
        file::parse(
            &REGISTRY.replace("port: 7001, proxyProtocol", "port: 7002, proxyProtocol"),
            "t",
        )
        .unwrap(),
    );
    let next = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.name, "default:deny", "the Server moved away");

    let err = client
        .watch_port(api::PortRequest {
            namespace: "demo".into(),
            pod: "books-0".into(),
            port: 70000,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[test]
fn ports_no_one_watches_any_more_are_forgotten() {
    let index = index();
    for port in 1..=1000u16 {
        drop(index.watch("demo", "books-0", port));
    }
    assert!(index.watched() <= 128, "{} watches kept", index.watched());
    let kept = index.watch("demo", "books-0", 7001);
    index.replace_all(file::parse(REGISTRY, "test.yaml").unwrap());
    assert_eq!(index.watched(), 1);
    drop(kept);
}
