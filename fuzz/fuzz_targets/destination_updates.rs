//! Any sequence of index changes, read by a stream at any pace, leaves the stream's view equal
//! to the index: the updates a stream sends (deltas one step behind, diffs further behind,
//! "no endpoints" when empty) never lose or invent an endpoint, and removals only name what
//! was added.
#![no_main]

use conduit_api::destination::update::Update as U;
use conduit_control_destination::index::{Index, Snapshot, View};
use conduit_control_destination::model::{Endpoint, Port, Service, ServiceKey};
use conduit_control_destination::server::updates;
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i % 8], 7001))
}

fuzz_target!(|data: &[u8]| {
    let index = Index::new("cluster.local");
    let key = ServiceKey::new("demo", "books");
    let mut rx = match index.endpoints("books.demo.svc.cluster.local:7001") {
        Ok(rx) => rx,
        Err(_) => return,
    };
    // What a client has been sent: None until the first message.
    let mut sent: Option<Arc<Snapshot>> = None;
    let mut client: BTreeSet<SocketAddr> = BTreeSet::new();
    let mut client_exists = false;
    for chunk in data.chunks(2) {
        let (op, arg) = (chunk[0], chunk.get(1).copied().unwrap_or(0));
        match op % 4 {
            0 => index.set_service(key.clone(), None),
            _ => {
                let mut endpoints = BTreeMap::new();
                for bit in 0..8u8 {
                    if arg & (1 << bit) != 0 {
                        let mut e = Endpoint::new(addr(bit));
                        e.weight = u32::from(op % 3) + 1;
                        endpoints.insert(e.addr, e);
                    }
                }
                let service = Service {
                    cluster_ips: vec![],
                    ports: BTreeMap::from([(7001, Port { endpoints, opaque: false })]),
                };
                index.set_service(key.clone(), Some(service));
            }
        }
        // The reader reads after some changes only, so it falls behind by varying amounts.
        if op & 0x10 == 0 {
            continue;
        }
        let next = rx.borrow_and_update().clone();
        for update in updates(sent.as_deref(), &next) {
            match update.update.expect("every update says something") {
                U::Add(set) => {
                    client_exists = true;
                    for a in set.addrs {
                        let a = SocketAddr::try_from(&a.addr.expect("an address")).expect("valid");
                        client.insert(a);
                    }
                }
                U::Remove(set) => {
                    for a in set.addrs {
                        let a = SocketAddr::try_from(&a).expect("valid");
                        assert!(client.remove(&a), "removed {a}, which was never added");
                    }
                }
                U::NoEndpoints(n) => {
                    client.clear();
                    client_exists = n.exists;
                }
            }
        }
        sent = Some(next.clone());
        match &next.view {
            View::Unknown => assert!(client.is_empty() && !client_exists),
            View::Known(set) => {
                let want: BTreeSet<SocketAddr> = set.keys().copied().collect();
                assert_eq!(client, want);
                assert!(client_exists);
            }
        }
    }
});
