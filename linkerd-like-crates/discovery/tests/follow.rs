//! Following a real controller's streams: changes, loss of the controller, its return.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use conduit_control_destination::model::{Endpoint, Port, Service, ServiceKey};
use conduit_control_destination::{DestinationService, Index};
use conduit_discovery::{Backoff, Discovery, Resolution, Resolved};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::wrappers::TcpListenerStream;

const BOOKS: &str = "books.demo.svc.cluster.local:7001";

fn books(addrs: &[&str]) -> Service {
    let endpoints = addrs
        .iter()
        .map(|a| {
            let a: SocketAddr = a.parse().unwrap();
            let mut e = Endpoint::new(a);
            e.labels.insert("pod".into(), format!("books-{}", a.port()));
            (a, e)
        })
        .collect();
    Service {
        cluster_ips: vec![],
        ports: BTreeMap::from([(
            7001,
            Port {
                endpoints,
                opaque: false,
            },
        )]),
    }
}

/// A controller in a runtime of its own, so that stopping it closes every connection it had,
/// as a killed process would.
struct Controller {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Controller {
    fn start(index: Arc<Index>, addr: SocketAddr) -> Self {
        let listener = std::net::TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let server = tonic::transport::Server::builder()
                    .add_service(DestinationService::new(index).into_server())
                    .serve_with_incoming(TcpListenerStream::new(listener));
                tokio::select! {
                    _ = server => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime cancels every connection task.
            drop(rt);
        });
        Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}

fn discovery(addr: SocketAddr) -> Discovery {
    Discovery::new(&addr.to_string(), "test")
        .unwrap()
        .with_backoff(Backoff::new(
            Duration::from_millis(20),
            Duration::from_millis(200),
        ))
}

fn addrs(r: &Resolution) -> Vec<String> {
    match r {
        Resolution::Known(set) => set.keys().map(ToString::to_string).collect(),
        other => vec![format!("{other:?}")],
    }
}

async fn until(r: &mut Resolved<Resolution>, want: &[&str]) {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if addrs(&r.update()) == want {
                return;
            }
            r.changed().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never saw {want:?}; last {:?}", addrs(&r.current())));
}

#[tokio::test]
async fn follows_changes_and_says_when_a_name_is_unknown() {
    let index = Index::new("cluster.local");
    index.set_service(
        ServiceKey::new("demo", "books"),
        Some(books(&["10.0.0.1:7001"])),
    );
    let ctl = Controller::start(index.clone(), "127.0.0.1:0".parse().unwrap());
    let d = discovery(ctl.addr);

    let mut r = d.resolve(BOOKS);
    until(&mut r, &["10.0.0.1:7001"]).await;
    let Resolution::Known(set) = r.current() else {
        unreachable!()
    };
    assert_eq!(set.values().next().unwrap().labels["pod"], "books-7001");

    index.set_service(
        ServiceKey::new("demo", "books"),
        Some(books(&["10.0.0.2:7001", "10.0.0.3:7001"])),
    );
    until(&mut r, &["10.0.0.2:7001", "10.0.0.3:7001"]).await;

    let mut unknown = d.resolve("example.com:80");
    tokio::time::timeout(Duration::from_secs(5), async {
        while unknown.update() != Resolution::Unknown {
            unknown.changed().await;
        }
    })
    .await
    .unwrap();

    let profile = d.profile(BOOKS);
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut profile = profile;
        while profile.update().is_none() {
            profile.changed().await;
        }
        assert_eq!(
            profile.current().unwrap().fully_qualified_name,
            "books.demo.svc.cluster.local"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn keeps_the_last_answer_without_the_controller_and_reconnects_when_it_returns() {
    let index = Index::new("cluster.local");
    index.set_service(
        ServiceKey::new("demo", "books"),
        Some(books(&["10.0.0.1:7001"])),
    );
    let mut ctl = Controller::start(index.clone(), "127.0.0.1:0".parse().unwrap());
    let d = discovery(ctl.addr);
    let mut r = d.resolve(BOOKS);
    until(&mut r, &["10.0.0.1:7001"]).await;

    // The controller dies; meanwhile its state changes.
    ctl.kill();
    index.set_service(
        ServiceKey::new("demo", "books"),
        Some(books(&["10.0.0.9:7001"])),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        addrs(&r.current()),
        ["10.0.0.1:7001"],
        "the last answer stays"
    );

    // It comes back on the same address: the proxy reconnects and catches up.
    let _back = Controller::start(index.clone(), ctl.addr);
    until(&mut r, &["10.0.0.9:7001"]).await;
}

#[tokio::test]
async fn the_stream_closes_when_the_last_handle_goes() {
    let index = Index::new("cluster.local");
    index.set_service(
        ServiceKey::new("demo", "books"),
        Some(books(&["10.0.0.1:7001"])),
    );
    let ctl = Controller::start(index.clone(), "127.0.0.1:0".parse().unwrap());
    let d = discovery(ctl.addr);
    let mut r = d.resolve(BOOKS);
    until(&mut r, &["10.0.0.1:7001"]).await;
    let clone = r.clone();
    drop(r);
    assert_eq!(index.stats().endpoint_watches, 1, "a clone keeps it open");
    drop(clone);
    tokio::time::timeout(Duration::from_secs(2), async {
        while index.stats().endpoint_watches > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the controller sees the stream go");
}
