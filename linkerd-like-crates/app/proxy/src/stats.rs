//! `ProxyStats.Get` on the tap port: everything the proxy has counted, for the controller's
//! aggregates (`proto/stats.proto`). Like tap, only the controller's identity may ask.

use conduit_api::stats as api;
use conduit_metrics::{Direction, ProxyMetrics, ResponseSnapshot, TcpSnapshot, TlsLabel};
use std::collections::HashMap;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Answers `ProxyStats.Get` from the proxy's metrics.
#[derive(Clone, Debug)]
pub(crate) struct ProxyStatsServer {
    metrics: ProxyMetrics,
    labels: HashMap<String, String>,
    identity: String,
    authorized: Arc<str>,
}

impl ProxyStatsServer {
    pub(crate) fn new(
        metrics: ProxyMetrics,
        labels: Option<&conduit_tap::Labels>,
        identity: &str,
        authorized: &str,
    ) -> Self {
        Self {
            metrics,
            labels: labels
                .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            identity: identity.to_string(),
            authorized: authorized.into(),
        }
    }
}

#[tonic::async_trait]
impl api::proxy_stats_server::ProxyStats for ProxyStatsServer {
    async fn get(
        &self,
        req: Request<api::GetProxyStats>,
    ) -> Result<Response<api::ProxySnapshot>, Status> {
        conduit_tap::authorize(&req, &self.authorized)?;
        Ok(Response::new(api::ProxySnapshot {
            labels: self.labels.clone(),
            identity: self.identity.clone(),
            responses: self
                .metrics
                .http
                .snapshot()
                .into_iter()
                .map(response)
                .collect(),
            tcp: self.metrics.tcp.snapshot().into_iter().map(tcp).collect(),
        }))
    }
}

fn direction(d: Direction) -> i32 {
    match d {
        Direction::Inbound => api::Direction::Inbound as i32,
        Direction::Outbound => api::Direction::Outbound as i32,
    }
}

fn tls(label: &TlsLabel) -> api::Tls {
    let id = |id: &Arc<str>| id.to_string();
    match label {
        TlsLabel::Disabled | TlsLabel::NoIdentity => api::Tls::default(),
        TlsLabel::Client(client) => api::Tls {
            tls: true,
            client_id: client.as_ref().map(id).unwrap_or_default(),
            server_id: String::new(),
        },
        TlsLabel::Server(server) => api::Tls {
            tls: true,
            client_id: String::new(),
            server_id: id(server),
        },
    }
}

fn response(s: ResponseSnapshot) -> api::ResponseSeries {
    api::ResponseSeries {
        direction: direction(s.direction),
        authority: s.authority.unwrap_or_default(),
        tls: Some(tls(&s.tls)),
        status: u32::from(s.status),
        success: s.success,
        route: s.route.map(|r| r.to_string()).unwrap_or_default(),
        dst_labels: s
            .dst
            .map(|d| d.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        count: s.count,
        latency: s
            .latency_us
            .into_iter()
            .map(|(micros, count)| api::Bucket { micros, count })
            .collect(),
    }
}

fn tcp(s: TcpSnapshot) -> api::TcpSeries {
    api::TcpSeries {
        direction: direction(s.direction),
        accepted: s.accepted,
        tls: Some(tls(&s.tls)),
        open: s.open,
        opened: s.opened,
    }
}
