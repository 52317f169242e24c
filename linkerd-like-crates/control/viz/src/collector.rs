//! Pulls every meshed proxy's `ProxyStats.Get` at a fixed interval and keeps the answers.

use crate::proxies::{self, Clients, Proxy};
use crate::window::{Delta, History};
use conduit_api::stats::proxy_stats_client::ProxyStatsClient;
use conduit_api::stats::GetProxyStats;
use conduit_control_destination::Index;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// The longest window the Stats API answers for.
pub const MAX_WINDOW: Duration = Duration::from_secs(600);

/// The stats of every meshed proxy, pulled every `interval`.
#[derive(Debug)]
pub struct Collector {
    index: Arc<Index>,
    clients: Clients,
    interval: Duration,
    histories: Mutex<HashMap<SocketAddr, (Proxy, History)>>,
}

impl Collector {
    /// A collector of `index`'s meshed proxies through `clients`.
    pub fn new(index: Arc<Index>, clients: Clients, interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            index,
            clients,
            interval,
            histories: Mutex::default(),
        })
    }

    /// How often proxies are asked.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Pulls forever.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.pull_once().await;
        }
    }

    /// Asks every meshed proxy once, all at the same time; a proxy that does not answer
    /// within the interval is skipped this time.
    pub async fn pull_once(&self) {
        let proxies = proxies::meshed(&self.index);
        self.clients.retain(&proxies);
        {
            let mut histories = self
                .histories
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // A pod's history goes with it; a pod that joins another service, or whose labels
            // change, keeps its history (same address, same identity: the same proxy).
            histories.retain(|addr, (known, _)| {
                match proxies
                    .iter()
                    .find(|q| q.tap == *addr && q.identity == known.identity)
                {
                    Some(now) => {
                        *known = now.clone();
                        true
                    }
                    None => false,
                }
            });
        }
        let timeout = self.interval.max(Duration::from_secs(1));
        let mut pulls = tokio::task::JoinSet::new();
        for proxy in proxies {
            let channel = match self.clients.channel(&proxy) {
                Ok(channel) => channel,
                Err(error) => {
                    tracing::debug!(%error, "stats: cannot reach a proxy");
                    continue;
                }
            };
            pulls.spawn(async move {
                let mut client = ProxyStatsClient::new(channel);
                let answer = tokio::time::timeout(timeout, client.get(GetProxyStats {})).await;
                (proxy, answer)
            });
        }
        while let Some(done) = pulls.join_next().await {
            let Ok((proxy, answer)) = done else { continue };
            match answer {
                Ok(Ok(rsp)) => {
                    let at = Instant::now();
                    let mut histories = self
                        .histories
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    let (_, history) = histories
                        .entry(proxy.tap)
                        .or_insert_with(|| (proxy.clone(), History::default()));
                    history.push(at, rsp.into_inner(), MAX_WINDOW + self.interval);
                }
                Ok(Err(status)) => {
                    tracing::debug!(proxy = %proxy.name(), %status, "stats: the proxy refused")
                }
                Err(_) => tracing::debug!(proxy = %proxy.name(), "stats: the proxy did not answer"),
            }
        }
    }

    /// Each proxy's counts over the last `window`.
    pub fn deltas(&self, window: Duration) -> Vec<(Proxy, Delta)> {
        let histories = self
            .histories
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<(Proxy, Delta)> = histories
            .values()
            .filter_map(|(p, h)| Some((p.clone(), h.delta(window)?)))
            .collect();
        all.sort_by_key(|(p, _)| p.tap);
        all
    }
}
