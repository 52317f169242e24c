//! `conduit demo`: a mesh on this machine, no cluster and no root needed.
//!
//! Three services in namespace `demo` (`web` calling `books` and `authors`) each run as a
//! "pod" on its own loopback address (127.0.1.1, .2, .3), with its application on the
//! service's port and its own `conduit-proxy` on the usual proxy ports (4140 outbound, 4143
//! inbound, 4191 admin) of that address. Service names resolve to the pods' inbound proxies,
//! as a ClusterIP would route them; `web` reaches the others through its outbound proxy.
//! Traffic flows into `web`, some of it fails on purpose, and a table of each service's
//! golden metrics, read from the proxies' `/metrics`, refreshes until Ctrl-C or `--duration`.

use crate::stats::{parse, Golden};
use bytes::Bytes;
use conduit_addr::{Addr, NameAddr};
use conduit_app_proxy::{resolve, trace, Config, Proxy};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How the demo runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Stop after this long; run until Ctrl-C when `None`.
    pub duration: Option<Duration>,
    /// How often the table refreshes.
    pub interval: Duration,
    /// Requests per second sent to `web`.
    pub rps: u32,
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// An address was taken.
    #[error("{what} cannot listen on {addr}: {source} (is another demo running?)")]
    Bind {
        /// What wanted the address.
        what: String,
        /// The address.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
}

/// One demo service.
#[derive(Clone, Copy, Debug)]
struct Service {
    name: &'static str,
    ip: Ipv4Addr,
    port: u16,
    /// Requests that fail on purpose, per thousand.
    failure_per_mille: u64,
    /// Work time range, in ms.
    latency_ms: (u64, u64),
}

const WEB: Service = Service {
    name: "web",
    ip: Ipv4Addr::new(127, 0, 1, 1),
    port: 7000,
    failure_per_mille: 0,
    latency_ms: (0, 1),
};
const BOOKS: Service = Service {
    name: "books",
    ip: Ipv4Addr::new(127, 0, 1, 2),
    port: 7001,
    failure_per_mille: 50,
    latency_ms: (1, 5),
};
const AUTHORS: Service = Service {
    name: "authors",
    ip: Ipv4Addr::new(127, 0, 1, 3),
    port: 7002,
    failure_per_mille: 100,
    latency_ms: (2, 8),
};
const SERVICES: [Service; 3] = [WEB, BOOKS, AUTHORS];

impl Service {
    fn authority(&self) -> String {
        format!("{}.demo.svc.cluster.local:{}", self.name, self.port)
    }
    fn app(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.port))
    }
    fn proxy_port(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.ip, port))
    }
}

/// A small non-cryptographic generator (xorshift): the demo only needs variety.
#[derive(Debug)]
struct Dice(AtomicU64);

impl Dice {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        Dice(AtomicU64::new(seed | 1))
    }
    fn roll(&self, below: u64) -> u64 {
        let mut x = self.0.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0.store(x, Ordering::Relaxed);
        x % below.max(1)
    }
}

type HttpClient = Client<Via, Empty<Bytes>>;

/// Connects every request to one address (a proxy), whatever its URI names.
#[derive(Clone, Debug)]
struct Via(SocketAddr);

impl tower_service::Service<http::Uri> for Via {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: http::Uri) -> Self::Future {
        let addr = self.0;
        Box::pin(async move {
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Ok(TokioIo::new(s))
        })
    }
}

fn client_via(addr: SocketAddr) -> HttpClient {
    Client::builder(TokioExecutor::new()).build(Via(addr))
}

async fn get(client: &HttpClient, url: String) -> Option<(http::StatusCode, Bytes)> {
    let req = http::Request::get(url).body(Empty::new()).ok()?;
    let rsp = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .ok()?
        .ok()?;
    let status = rsp.status();
    let body = rsp.into_body().collect().await.ok()?.to_bytes();
    Some((status, body))
}

fn bind_error(what: String, addr: SocketAddr) -> impl FnOnce(std::io::Error) -> DemoError {
    move |source| DemoError::Bind { what, addr, source }
}

/// Serves one demo application.
async fn start_app(svc: Service, dice: Arc<Dice>) -> Result<(), DemoError> {
    let listener = TcpListener::bind(svc.app())
        .await
        .map_err(bind_error(format!("the {} app", svc.name), svc.app()))?;
    let outbound = client_via(svc.proxy_port(4140));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (dice, outbound) = (dice.clone(), outbound.clone());
            tokio::spawn(async move {
                let handler = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let (dice, outbound) = (dice.clone(), outbound.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(handle(svc, req, &dice, &outbound).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), handler)
                    .await;
            });
        }
    });
    Ok(())
}

async fn handle(
    svc: Service,
    req: http::Request<Incoming>,
    dice: &Dice,
    outbound: &HttpClient,
) -> http::Response<Full<Bytes>> {
    let (lo, hi) = svc.latency_ms;
    tokio::time::sleep(Duration::from_millis(lo + dice.roll(hi - lo + 1))).await;
    let id = 1 + dice.roll(20);
    let (status, body) = if svc.name == "web" {
        // The front end needs both back ends.
        let books = get(outbound, format!("http://{}/books/{id}", BOOKS.authority()));
        let authors = get(
            outbound,
            format!("http://{}/authors/{id}", AUTHORS.authority()),
        );
        match tokio::join!(books, authors) {
            (Some((b, book)), Some((a, author))) if b.is_success() && a.is_success() => (
                http::StatusCode::OK,
                format!(
                    "{{\"book\":{},\"author\":{}}}",
                    String::from_utf8_lossy(&book),
                    String::from_utf8_lossy(&author)
                ),
            ),
            _ => (
                http::StatusCode::BAD_GATEWAY,
                "{\"error\":\"a back end failed\"}".to_string(),
            ),
        }
    } else if dice.roll(1000) < svc.failure_per_mille {
        (
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "{\"error\":\"simulated failure\"}".to_string(),
        )
    } else {
        (
            http::StatusCode::OK,
            format!(
                "{{\"service\":\"{}\",\"id\":{id},\"path\":\"{}\"}}",
                svc.name,
                req.uri().path()
            ),
        )
    };
    let mut rsp = http::Response::new(Full::from(body));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    rsp
}

/// The names every demo proxy resolves: each service's authority to its pod's inbound proxy.
fn hosts() -> HashMap<NameAddr, Vec<SocketAddr>> {
    SERVICES
        .iter()
        .filter_map(|s| match s.authority().parse::<Addr>() {
            Ok(Addr::Name(name)) => Some((name, vec![s.proxy_port(4143)])),
            _ => None,
        })
        .collect()
}

async fn start_proxy(svc: Service, stop: watch::Receiver<bool>) -> Result<(), DemoError> {
    let vars = HashMap::from([
        (
            "CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR",
            svc.proxy_port(4140).to_string(),
        ),
        (
            "CONDUIT_PROXY_INBOUND_LISTEN_ADDR",
            svc.proxy_port(4143).to_string(),
        ),
        (
            "CONDUIT_PROXY_ADMIN_LISTEN_ADDR",
            svc.proxy_port(4191).to_string(),
        ),
        ("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", svc.app().to_string()),
        ("CONDUIT_PROXY_SHUTDOWN_GRACE_PERIOD", "2s".to_string()),
    ]);
    let config = match Config::from_lookup(|k| vars.get(k).cloned()) {
        Ok(c) => c,
        Err(e) => unreachable!("the demo's own configuration is valid: {e}"),
    };
    let resolve = Arc::new(resolve::Static::new(hosts(), None));
    let bound =
        Proxy::bind(config, resolve, Arc::new(trace::Unmanaged)).map_err(|e| DemoError::Bind {
            what: format!("the {} proxy ({})", svc.name, e.var),
            addr: e.addr,
            source: e.source,
        })?;
    let mut stop = stop;
    tokio::spawn(bound.run(async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
    Ok(())
}

/// Sends `rps` requests per second to `web` through its inbound proxy, as an ingress would.
fn start_traffic(rps: u32, mut stop: watch::Receiver<bool>) {
    let client = client_via(WEB.proxy_port(4143));
    let period = Duration::from_secs_f64(1.0 / f64::from(rps.max(1)));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let limit = Arc::new(tokio::sync::Semaphore::new(64));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                continue;
            };
            let client = client.clone();
            tokio::spawn(async move {
                let _ = get(&client, format!("http://{}/", WEB.authority())).await;
                drop(permit);
            });
        }
    });
}

async fn scrape(svc: &Service) -> Option<Golden> {
    let client = client_via(svc.proxy_port(4191));
    let (status, body) = get(&client, format!("http://{}/metrics", svc.proxy_port(4191))).await?;
    if !status.is_success() {
        return None;
    }
    let text = String::from_utf8_lossy(&body);
    Some(Golden::from_samples(&parse(&text), "inbound"))
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
}

/// Renders the table of golden metrics: totals since the start, rates and latency over the
/// last `interval` (falling back to the totals' latency when the interval saw no requests).
pub fn render(rows: &[(String, Golden, Golden)], interval: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<36} {:>9} {:>9} {:>8} {:>8} {:>8}",
        "SERVICE", "REQUESTS", "SUCCESS", "RPS", "P50 ms", "P99 ms"
    );
    for (name, total, recent) in rows {
        let success = total
            .success_rate()
            .map_or_else(|| "-".to_string(), |r| format!("{:.2}%", r * 100.0));
        let rps = recent.responses / interval.as_secs_f64().max(1e-3);
        let _ = writeln!(
            out,
            "{:<36} {:>9} {:>9} {:>8.1} {:>8} {:>8}",
            name,
            total.responses,
            success,
            rps,
            fmt_ms(recent.quantile(0.5).or_else(|| total.quantile(0.5))),
            fmt_ms(recent.quantile(0.99).or_else(|| total.quantile(0.99))),
        );
    }
    out
}

/// Runs the demo, writing the table to `out`, until `opts.duration` passes or Ctrl-C.
pub async fn run(opts: Options, out: &mut (dyn Write + Send)) -> Result<(), DemoError> {
    let dice = Arc::new(Dice::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    for svc in SERVICES {
        start_app(svc, dice.clone()).await?;
        start_proxy(svc, stop_rx.clone()).await?;
    }
    let _ = writeln!(
        out,
        "Conduit demo: three services in namespace demo, each with its own proxy."
    );
    for svc in SERVICES {
        let _ = writeln!(
            out,
            "  {:<8} app {}  proxy: outbound {}, inbound {}, metrics http://{}/metrics",
            svc.name,
            svc.app(),
            svc.proxy_port(4140),
            svc.proxy_port(4143),
            svc.proxy_port(4191),
        );
    }
    let _ = writeln!(
        out,
        "Sending {} requests/s to web; Ctrl-C to stop.\n",
        opts.rps
    );
    start_traffic(opts.rps, stop_rx.clone());

    let tty = std::io::stdout().is_terminal();
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    let mut previous: Vec<Golden> = vec![Golden::default(); SERVICES.len()];
    let mut tick = tokio::time::interval(opts.interval);
    tick.tick().await;
    let mut last = tokio::time::Instant::now();
    loop {
        let stop_at = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let done = tokio::select! {
            _ = tick.tick() => false,
            _ = stop_at => true,
            _ = tokio::signal::ctrl_c() => true,
        };
        let mut rows = Vec::new();
        for (i, svc) in SERVICES.iter().enumerate() {
            let now = scrape(svc).await.unwrap_or_default();
            let recent = now.since(&previous[i]);
            rows.push((svc.authority(), now.clone(), recent));
            previous[i] = now;
        }
        if tty {
            let _ = write!(out, "\x1b[2J\x1b[H");
        }
        let _ = write!(out, "{}", render(&rows, last.elapsed()));
        last = tokio::time::Instant::now();
        let _ = writeln!(out);
        let _ = out.flush();
        if done {
            break;
        }
    }
    let _ = stop_tx.send(true);
    // Let the proxies drain their connections.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_resolves_to_its_pods_inbound_proxy() {
        let h = hosts();
        assert_eq!(h.len(), 3);
        let Ok(Addr::Name(books)) = BOOKS.authority().parse::<Addr>() else {
            panic!("books must be a name");
        };
        assert_eq!(h[&books], vec!["127.0.1.2:4143".parse().unwrap()]);
    }

    #[test]
    fn the_table_has_a_row_per_service() {
        let total = Golden {
            responses: 10.0,
            successes: 9.0,
            buckets: vec![(1.0, 5.0), (2.0, 10.0), (f64::INFINITY, 10.0)],
        };
        let rows = vec![(
            "books.demo.svc.cluster.local:7001".to_string(),
            total.clone(),
            total,
        )];
        let table = render(&rows, Duration::from_secs(2));
        assert!(table.starts_with("SERVICE"));
        let line = table.lines().nth(1).unwrap();
        assert!(line.contains("books.demo.svc.cluster.local:7001"), "{line}");
        assert!(line.contains("90.00%"), "{line}");
        assert!(line.contains("5.0"), "rps: {line}");
    }
}
