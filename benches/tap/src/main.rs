//! `conduit-bench-tap TAP-ADDR IDENTITY-DIR PROXY-NAME nothing|everything`: opens a tap on the
//! proxy whose tap server is at TAP-ADDR, as the controller (its certificate signed here
//! with the issuer in IDENTITY-DIR), with a filter that matches nothing or everything (at the
//! proxy's default rate limit), and reads its events until SIGTERM or SIGINT. Prints
//! `BENCH events N` when it stops. A benchmark helper: it measures nothing by itself.
//!
//! `conduit-bench-tap layer [REQUESTS]` measures the tap layer alone (see `layer.rs`).
#![allow(clippy::expect_used)]

use conduit_api::tap::tap_client::TapClient;
use conduit_api::tap::{Match, ObserveRequest};
use conduit_control_ca::Issuer;
use conduit_identity::{Domain, Name, Workload};
use conduit_tls::ClientTls;
use std::sync::Arc;
use std::time::Duration;

mod layer;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("layer") {
        let requests = args
            .get(2)
            .map_or(1_000_000, |n| n.parse().expect("REQUESTS"));
        return layer::main(requests);
    }
    if args.len() != 5 || !matches!(args[4].as_str(), "nothing" | "everything") {
        eprintln!("usage: conduit-bench-tap TAP-ADDR IDENTITY-DIR PROXY-NAME nothing|everything");
        std::process::exit(2);
    }
    let dir = std::path::PathBuf::from(&args[2]);
    let proxy = Name::parse(&args[3]).expect("PROXY-NAME is an identity");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("identity file");
    let issuer =
        Issuer::from_pem(&read("ca.crt"), &read("tls.crt"), &read("tls.key")).expect("issuer");
    let domain = Domain::default();
    let controller = Workload {
        service_account: "conduit-controller".into(),
        namespace: domain.control_namespace.clone(),
    };
    let (creds, _) = issuer
        .issue_credentials(&domain, &controller, Duration::from_secs(3600))
        .expect("certify");
    let tls = ClientTls::new(Arc::new(creds)).expect("tls");
    let filter = match args[4].as_str() {
        // The empty filter matches no request.
        "nothing" => Some(Match { r#match: None }),
        _ => None,
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let events = rt.block_on(async move {
        let channel = conduit_discovery::channel(&args[1], Some((tls, proxy))).expect("address");
        let mut stream = TapClient::new(channel)
            .observe(ObserveRequest {
                limit: 0,
                max_rps: 0.0,
                r#match: filter,
            })
            .await
            .expect("the proxy accepts the tap")
            .into_inner();
        println!("READY");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal");
        let mut events = 0u64;
        loop {
            tokio::select! {
                e = stream.message() => match e {
                    Ok(Some(_)) => events += 1,
                    _ => break,
                },
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        events
    });
    println!("BENCH events {events}");
}
