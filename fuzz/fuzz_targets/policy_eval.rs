//! Policy evaluation: any InboundServer the controller could send is read without panicking
//! (or refused with a reason), and evaluating it for any client never panics; an
//! unauthenticated authorization without networks lets everyone in, and a policy with no
//! authorizations lets no one in.
#![no_main]

use conduit_api::policy as api;
use conduit_identity::Name;
use conduit_policy::{Client, ServerPolicy};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fuzz_target!(|data: &[u8]| {
    let Some((head, wire)) = data.split_first_chunk::<20>() else {
        return;
    };
    let Ok(server) = api::InboundServer::decode(&wire[..]) else {
        return;
    };
    let Ok(policy) = ServerPolicy::from_api(&server) else {
        return;
    };
    let v4 = IpAddr::V4(Ipv4Addr::new(head[0], head[1], head[2], head[3]));
    let mut six = [0u8; 16];
    six.copy_from_slice(&head[4..20]);
    let v6 = IpAddr::V6(Ipv6Addr::from(six));
    let id = Name::parse("web.demo.serviceaccount.identity.conduit.cluster.local").ok();
    for addr in [v4, v6] {
        for identity in [None, id.as_ref()] {
            let client = Client { addr, identity };
            let result = policy.authorize(&client);
            let open = policy.authorizations.iter().any(|a| {
                a.networks.is_empty() && a.authn == conduit_policy::Authn::Unauthenticated
            });
            if open {
                assert!(result.is_ok());
            }
            if policy.authorizations.is_empty() {
                assert!(result.is_err());
            }
        }
    }
});
