//! `conduit-bench-tls ADDR IDENTITY-DIR SERVER-NAME [SECONDS] [CONCURRENCY]`: full mutual-TLS
//! handshakes (a new TCP connection each, a client certificate presented, ALPN h2), as fast
//! as they complete, against the proxy listening at ADDR for SERVER-NAME. The client's
//! certificate is signed here with the issuer in IDENTITY-DIR (`ca.crt`, `tls.crt`,
//! `tls.key`). Prints handshakes per second and handshake latency percentiles. A benchmark:
//! it measures and prints.
#![allow(clippy::expect_used)]

use conduit_control_ca::Issuer;
use conduit_identity::{Domain, Name, Workload};
use conduit_tls::ClientTls;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: conduit-bench-tls ADDR IDENTITY-DIR SERVER-NAME [SECONDS] [CONCURRENCY]");
        std::process::exit(2);
    }
    let addr: std::net::SocketAddr = args[1].parse().expect("ADDR is ip:port");
    let dir = std::path::PathBuf::from(&args[2]);
    let server = Name::parse(&args[3]).expect("SERVER-NAME is an identity");
    let secs: u64 = args.get(4).map_or(5, |s| s.parse().expect("SECONDS"));
    let concurrency: usize = args.get(5).map_or(1, |s| s.parse().expect("CONCURRENCY"));

    let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("identity file");
    let issuer =
        Issuer::from_pem(&read("ca.crt"), &read("tls.crt"), &read("tls.key")).expect("issuer");
    let workload = Workload {
        service_account: "bench".into(),
        namespace: "bench".into(),
    };
    let domain = Domain::default();
    let (creds, _) = issuer
        .issue_credentials(&domain, &workload, Duration::from_secs(3600))
        .expect("certify");
    let client = ClientTls::new(Arc::new(creds)).expect("tls");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (done, mut latencies, failures) = rt.block_on(async move {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (client, server) = (client.clone(), server.clone());
            tasks.push(tokio::spawn(async move {
                let (mut lat, mut failed) = (Vec::new(), 0u64);
                while Instant::now() < deadline {
                    let start = Instant::now();
                    let ok = match tokio::net::TcpStream::connect(addr).await {
                        Ok(tcp) => client.connect(&server, true, tcp).await.is_ok(),
                        Err(_) => false,
                    };
                    if ok {
                        lat.push(start.elapsed().as_micros() as u64);
                    } else {
                        failed += 1;
                    }
                }
                (lat, failed)
            }));
        }
        let (mut all, mut failed) = (Vec::new(), 0);
        for t in tasks {
            let (lat, f) = t.await.expect("task");
            all.extend(lat);
            failed += f;
        }
        (all.len(), all, failed)
    });
    latencies.sort_unstable();
    let pct = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "BENCH handshakes/s {:.0} p50 {} us p99 {} us failures {failures} concurrency {concurrency}",
        done as f64 / secs as f64,
        pct(0.50),
        pct(0.99)
    );
}
