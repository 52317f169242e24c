//! The controller over real sockets: a file registry, the gRPC API, and its clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use conduit_api::destination::destination_client::DestinationClient;
use conduit_api::destination::{update, GetDestination, Update};
use conduit_app_admin::trace::Unmanaged;
use conduit_app_controller::Args;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::Streaming;

const REGISTRY: &str = r#"
services:
  - name: books
    namespace: demo
    clusterIPs: [10.96.0.2]
    ports:
      - port: 7001
        endpoints:
          - address: 127.0.1.2:7001
            labels: {pod: books-0}
          - address: 127.0.1.4:7001
profiles:
  - service: books.demo.svc.cluster.local
    routes:
      - name: GET /books
        condition: {method: GET, pathRegex: /books}
        timeout: 250ms
"#;

struct Controller {
    grpc: SocketAddr,
    index: Arc<conduit_control_destination::Index>,
    registry: PathBuf,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn controller(name: &str, registry: &str) -> Controller {
    let dir = std::env::temp_dir().join(format!("conduit-ctl-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("registry.yaml");
    std::fs::write(&path, registry).unwrap();
    let args = Args::with_registry(
        path.clone(),
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    );
    let bound = conduit_app_controller::bind(args, Arc::new(Unmanaged))
        .await
        .unwrap();
    let grpc = bound.grpc_addr();
    let index = bound.index().clone();
    tokio::spawn(bound.run(std::future::pending()));
    Controller {
        grpc,
        index,
        registry: path,
        _dir: TempDir(dir),
    }
}

async fn client(addr: SocketAddr) -> DestinationClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    DestinationClient::new(channel)
}

fn get(path: &str) -> GetDestination {
    GetDestination {
        scheme: "k8s".into(),
        path: path.into(),
        context_token: String::new(),
    }
}

async fn next(stream: &mut Streaming<Update>) -> update::Update {
    tokio::time::timeout(Duration::from_secs(2), stream.message())
        .await
        .expect("an update in time")
        .unwrap()
        .expect("the stream is open")
        .update
        .unwrap()
}

fn addrs(update: &update::Update) -> Vec<String> {
    let wire: Vec<_> = match update {
        update::Update::Add(set) => set.addrs.iter().map(|a| a.addr.clone().unwrap()).collect(),
        update::Update::Remove(set) => set.addrs.clone(),
        update::Update::NoEndpoints(_) => Vec::new(),
    };
    wire.iter()
        .map(|a| SocketAddr::try_from(a).unwrap().to_string())
        .collect()
}

fn rewrite(path: &Path, text: &str) {
    // Write then rename, as editors and ConfigMaps do, so the poller never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn a_stream_gets_the_endpoints_then_each_change() {
    let ctl = controller("changes", REGISTRY).await;
    let mut client = client(ctl.grpc).await;
    let mut stream = client
        .get(get("books.demo.svc.cluster.local:7001"))
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut stream).await;
    assert!(matches!(first, update::Update::Add(_)));
    assert_eq!(addrs(&first), ["127.0.1.2:7001", "127.0.1.4:7001"]);
    if let update::Update::Add(set) = &first {
        assert_eq!(set.addrs[0].metric_labels["pod"], "books-0");
    }

    rewrite(&ctl.registry, &REGISTRY.replace("127.0.1.4", "127.0.1.5"));
    let removed = next(&mut stream).await;
    assert!(matches!(removed, update::Update::Remove(_)), "{removed:?}");
    assert_eq!(addrs(&removed), ["127.0.1.4:7001"]);
    let added = next(&mut stream).await;
    assert_eq!(addrs(&added), ["127.0.1.5:7001"]);

    // By cluster IP, the same service.
    let mut by_ip = client
        .get(get("10.96.0.2:7001"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        addrs(&next(&mut by_ip).await),
        ["127.0.1.2:7001", "127.0.1.5:7001"]
    );

    // A name the controller does not know: "no endpoints, and no such service".
    let mut unknown = client
        .get(get("example.com:80"))
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        next(&mut unknown).await,
        update::Update::NoEndpoints(n) if !n.exists
    ));

    // The service deleted: "no endpoints".
    rewrite(&ctl.registry, "services: []\n");
    assert!(matches!(
        next(&mut stream).await,
        update::Update::NoEndpoints(n) if !n.exists
    ));
}

#[tokio::test]
async fn profiles_stream_and_bad_names_are_refused_with_a_reason() {
    let ctl = controller("profiles", REGISTRY).await;
    let mut client = client(ctl.grpc).await;
    let mut profiles = client
        .get_profile(get("books.demo.svc.cluster.local:7001"))
        .await
        .unwrap()
        .into_inner();
    let profile = tokio::time::timeout(Duration::from_secs(2), profiles.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(profile.fully_qualified_name, "books.demo.svc.cluster.local");
    assert_eq!(profile.routes[0].name, "GET /books");
    assert_eq!(profile.routes[0].timeout_ms, 250);

    let status = client.get(get("books:port")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("bad port"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_stream_that_never_reads_delays_no_other_and_streams_are_cleaned_up() {
    // Enough endpoints that the first answer alone overflows an HTTP/2 stream window, so the
    // slow stream's sender is truly stuck.
    let many: String = (0..5000)
        .map(|i| {
            format!(
                "          - address: 10.{}.{}.{}:7001\n",
                i / 65536,
                (i / 256) % 256,
                i % 256
            )
        })
        .collect();
    let registry = REGISTRY.replace(
        "          - address: 127.0.1.4:7001\n",
        &format!("          - address: 127.0.1.4:7001\n{many}"),
    );
    let ctl = controller("slow", &registry).await;
    // Its own connection, so that HTTP/2 flow control on it cannot touch the others.
    let mut slow_client = client(ctl.grpc).await;
    let slow = slow_client
        .get(get("books.demo.svc.cluster.local:7001"))
        .await
        .unwrap()
        .into_inner();
    let mut client = client(ctl.grpc).await;
    let mut streams = Vec::new();
    for _ in 0..20 {
        let mut s = client
            .get(get("books.demo.svc.cluster.local:7001"))
            .await
            .unwrap()
            .into_inner();
        let mut first = 0;
        while first < 5002 {
            first += addrs(&next(&mut s).await).len();
        }
        streams.push(s);
    }
    // Many changes; the slow stream reads none of them.
    for i in 0..30 {
        let text = registry.replace("127.0.1.4", &format!("127.0.2.{i}"));
        ctl.index.replace_all(
            conduit_control_destination::file::parse(&text, "t")
                .unwrap()
                .services,
            Default::default(),
        );
    }
    for s in &mut streams {
        // Every reader converges on the last state; it may skip intermediate ones.
        let mut seen = Vec::new();
        while !seen.iter().any(|a: &String| a == "127.0.2.29:7001") {
            seen.extend(addrs(&next(s).await));
        }
    }
    assert_eq!(
        ctl.index.stats().endpoint_watches,
        1,
        "one watch serves all"
    );

    drop(slow);
    drop(streams);
    tokio::time::timeout(Duration::from_secs(2), async {
        while ctl.index.stats().endpoint_watches > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("streams are cleaned up once their clients go");
}
