//! Benchmark (not a test): one controller, one service with N endpoints, S concurrent `Get`
//! streams; change one endpoint, and measure the time until every stream has seen it.
//!
//! ```sh
//! cargo run --release -p conduit-bench-controller -- 1000 1000 20   # endpoints streams changes
//! ```
//!
//! The controller (index + gRPC server) runs in a child process of its own, so its RSS and
//! CPU are its alone; the streams run in this one. A change is applied to the controller's
//! index on command, as a Kubernetes watch event would be; the time runs from the command to
//! each stream's receipt of the new endpoint.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use conduit_api::destination::destination_client::DestinationClient;
use conduit_api::destination::{update, GetDestination};
use conduit_control_destination::model::{Endpoint, Port, Service, ServiceKey};
use conduit_control_destination::{DestinationService, Index};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::TcpListenerStream;

fn service(n: usize, generation: usize) -> Service {
    let mut endpoints = BTreeMap::new();
    for i in 0..n {
        // Endpoint 0 moves with each generation: one change per generation.
        let host = if i == 0 { 100_000 + generation } else { i };
        let addr = SocketAddr::from((
            [10, (host >> 16) as u8, (host >> 8) as u8, host as u8],
            8080,
        ));
        endpoints.insert(addr, Endpoint::new(addr));
    }
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

fn moved_addr(generation: usize) -> SocketAddr {
    let host = 100_000 + generation;
    SocketAddr::from((
        [10, (host >> 16) as u8, (host >> 8) as u8, host as u8],
        8080,
    ))
}

fn status() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i]
}

/// The controller: serves the index, applies changes and reports its costs on command.
fn serve(endpoints: usize) {
    use std::io::BufRead;
    let index = Index::new("cluster.local");
    let key = ServiceKey::new("demo", "books");
    index.set_service(key.clone(), Some(service(endpoints, 0)));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    println!("addr {}", listener.local_addr().unwrap());
    let svc = DestinationService::new(index.clone()).into_server();
    rt.spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("change") => {
                let generation: usize = words.next().and_then(|g| g.parse().ok()).unwrap_or(1);
                index.set_service(key.clone(), Some(service(endpoints, generation)));
                println!("ok");
            }
            Some("stats") => {
                let (rss, hwm) = status();
                println!("stats {rss} {hwm} {}", cpu_seconds());
            }
            _ => return,
        }
    }
}

struct Child {
    process: std::process::Child,
    input: std::process::ChildStdin,
    output: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Child {
    fn ask(&mut self, command: &str) -> String {
        use std::io::Write;
        writeln!(self.input, "{command}").unwrap();
        self.input.flush().unwrap();
        self.output.next().unwrap().unwrap()
    }

    fn stats(&mut self) -> (f64, f64, f64) {
        let line = self.ask("stats");
        let v: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|w| w.parse().ok())
            .collect();
        (v[0] / 1024.0, v[1] / 1024.0, v[2])
    }
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if raw.first().map(String::as_str) == Some("serve") {
        return serve(raw.get(1).and_then(|n| n.parse().ok()).unwrap_or(1000));
    }
    let args: Vec<usize> = raw.iter().filter_map(|a| a.parse().ok()).collect();
    let endpoints = args.first().copied().unwrap_or(1000);
    let streams = args.get(1).copied().unwrap_or(1000);
    let changes = args.get(2).copied().unwrap_or(20);

    let mut process = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["serve", &endpoints.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = process.stdin.take().unwrap();
    let output = std::io::BufRead::lines(std::io::BufReader::new(process.stdout.take().unwrap()));
    let mut child = Child {
        process,
        input,
        output,
    };
    let addr: SocketAddr = child.output.next().unwrap().unwrap()["addr ".len()..]
        .parse()
        .unwrap();
    let (idle_rss, _, _) = child.stats();

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    client_rt.block_on(async {
        // 50 streams per HTTP/2 connection, as many proxies would open.
        let mut channels = Vec::new();
        for _ in 0..streams.div_ceil(50) {
            let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap();
            channels.push(ch);
        }
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
        for s in 0..streams {
            let mut client = DestinationClient::new(channels[s / 50].clone())
                .max_decoding_message_size(64 << 20);
            let (seen_tx, ready_tx) = (seen_tx.clone(), ready_tx.clone());
            tokio::spawn(async move {
                let req = GetDestination {
                    scheme: "k8s".into(),
                    path: "books.demo.svc.cluster.local:7001".into(),
                    context_token: String::new(),
                };
                let mut stream = client.get(req).await.unwrap().into_inner();
                let mut have = 0;
                let mut ready = false;
                while let Ok(Some(msg)) = stream.message().await {
                    let now = Instant::now();
                    if let Some(update::Update::Add(set)) = msg.update {
                        have += set.addrs.len();
                        for a in &set.addrs {
                            let sa = SocketAddr::try_from(a.addr.as_ref().unwrap()).unwrap();
                            for generation in 1..=changes {
                                if sa == moved_addr(generation) {
                                    let _ = seen_tx.send((generation, now));
                                }
                            }
                        }
                    }
                    if !ready && have >= endpoints {
                        ready = true;
                        let _ = ready_tx.send(());
                    }
                }
            });
        }
        for _ in 0..streams {
            ready_rx.recv().await.unwrap();
        }
    });
    let (loaded_rss, _, cpu_before) = child.stats();

    let mut latencies = Vec::new();
    for generation in 1..=changes {
        let t0 = Instant::now();
        child.ask(&format!("change {generation}"));
        let mut seen = 0;
        while seen < streams {
            let (g, at) = client_rt
                .block_on(async {
                    tokio::time::timeout(Duration::from_secs(30), seen_rx.recv()).await
                })
                .expect("every stream sees the change")
                .unwrap();
            if g == generation {
                latencies.push(at.saturating_duration_since(t0));
                seen += 1;
            }
        }
    }
    let (rss, hwm, cpu_after) = child.stats();
    latencies.sort();
    println!("| endpoints | streams | changes | p50 | p99 | max | controller RSS idle | with streams | peak | CPU per change |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {endpoints} | {streams} | {changes} | {:.1} ms | {:.1} ms | {:.1} ms | {idle_rss:.1} MiB | {:.1} MiB | {hwm:.1} MiB | {:.1} ms |",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        loaded_rss.max(rss),
        (cpu_after - cpu_before) / changes as f64 * 1e3,
    );
    drop(child.input);
    let _ = child.process.wait();
}
