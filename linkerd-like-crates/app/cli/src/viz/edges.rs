//! `conduit edges`: which workloads talk to which, with the identities each side presented
//! and whether the connection was mTLS.

use super::{channel, columns, display, golden_cells, window, Output, VizError};
use conduit_api::stats::stats_client::StatsClient;
use conduit_api::stats::{EdgesRequest, EdgesResponse};
use std::time::Duration;

/// Asks the controller at `addr` for the edges between resources of `kind` in `namespace`
/// (empty: every namespace).
pub async fn query(
    addr: &str,
    kind: &str,
    namespace: &str,
    window_: Duration,
) -> Result<EdgesResponse, VizError> {
    let mut client = StatsClient::new(channel(addr)?);
    let rsp = client
        .edges(EdgesRequest {
            namespace: namespace.to_string(),
            kind: kind.to_string(),
            window: window(window_),
        })
        .await
        .map_err(|s| VizError::controller(addr, s))?;
    Ok(rsp.into_inner())
}

/// The first dotted part of an identity: the service account (`web` of
/// `web.demo.serviceaccount.identity...`).
fn short(id: &str) -> String {
    match id.split_once(".serviceaccount.") {
        Some((sa_ns, _)) => sa_ns.to_string(),
        None if id.is_empty() => "-".into(),
        None => id.to_string(),
    }
}

/// Renders an answer (`wide` shows the full identities).
pub fn render(rsp: &EdgesResponse, output: Output) -> String {
    if output == Output::Json {
        return format!("{:#}\n", conduit_control_viz::json::edges(rsp));
    }
    if rsp.rows.is_empty() {
        return "No edges found.\n".into();
    }
    let header = [
        "SRC",
        "DST",
        "SRC_NS",
        "DST_NS",
        "SECURED",
        "CLIENT_ID",
        "SERVER_ID",
        "SUCCESS",
        "RPS",
        "LATENCY_P50",
        "LATENCY_P95",
        "LATENCY_P99",
    ];
    let id = |s: &str| {
        if output == Output::Wide {
            if s.is_empty() {
                "-".into()
            } else {
                s.to_string()
            }
        } else {
            short(s)
        }
    };
    let rows: Vec<Vec<String>> = rsp
        .rows
        .iter()
        .map(|row| {
            let (src, dst) = (
                row.src.clone().unwrap_or_default(),
                row.dst.clone().unwrap_or_default(),
            );
            let mut cells = vec![
                display(&src),
                display(&dst),
                src.namespace,
                dst.namespace,
                if row.secured {
                    "√".into()
                } else {
                    "×".into()
                },
                id(&row.client_id),
                id(&row.server_id),
            ];
            cells.extend(golden_cells(row.golden.as_ref()));
            cells
        })
        .collect();
    columns(&header, &rows, 7)
}

#[cfg(test)]
mod tests {
    #[test]
    fn identities_shorten_to_the_service_account() {
        assert_eq!(
            super::short("web.demo.serviceaccount.identity.conduit.cluster.local"),
            "web.demo"
        );
        assert_eq!(super::short(""), "-");
    }
}
