//! `conduit stat`: golden metrics per resource, as `linkerd viz stat` shows them.

use super::{channel, columns, display, golden_cells, window, Output, VizError};
use conduit_api::stats::stats_client::StatsClient;
use conduit_api::stats::{StatRequest, StatResponse};
use conduit_api::tap::Resource;
use std::time::Duration;

/// What to ask.
#[derive(Clone, Debug)]
pub struct StatArgs {
    /// The rows' resource.
    pub resource: Resource,
    /// Only requests from here.
    pub from: Option<Resource>,
    /// Only requests to here.
    pub to: Option<Resource>,
    /// The window.
    pub window: Duration,
}

/// Asks the controller at `addr`.
pub async fn query(addr: &str, args: &StatArgs) -> Result<StatResponse, VizError> {
    let mut client = StatsClient::new(channel(addr)?);
    let rsp = client
        .stat(StatRequest {
            resource: Some(args.resource.clone()),
            from: args.from.clone(),
            to: args.to.clone(),
            window: window(args.window),
        })
        .await
        .map_err(|s| VizError::controller(addr, s))?;
    Ok(rsp.into_inner())
}

/// Renders an answer; `namespaces` adds a NAMESPACE column (every namespace was asked).
pub fn render(rsp: &StatResponse, output: Output, namespaces: bool) -> String {
    if output == Output::Json {
        return format!("{:#}\n", conduit_control_viz::json::stat(rsp));
    }
    if rsp.rows.is_empty() {
        return "No resources found.\n".into();
    }
    let mut header = vec![];
    if namespaces {
        header.push("NAMESPACE");
    }
    header.extend([
        "NAME",
        "MESHED",
        "SUCCESS",
        "RPS",
        "LATENCY_P50",
        "LATENCY_P95",
        "LATENCY_P99",
        "TCP_CONN",
    ]);
    if output == Output::Wide {
        header.extend(["REQUESTS", "FAILURES"]);
    }
    let rows: Vec<Vec<String>> = rsp
        .rows
        .iter()
        .map(|row| {
            let r = row.resource.clone().unwrap_or_default();
            let mut cells = vec![];
            if namespaces {
                cells.push(r.namespace.clone());
            }
            cells.push(display(&r));
            cells.push(format!("{}/{}", row.meshed, row.pods));
            cells.extend(golden_cells(row.golden.as_ref()));
            cells.push(row.tcp_connections.to_string());
            if output == Output::Wide {
                let g = row.golden.unwrap_or_default();
                cells.push(g.requests.to_string());
                cells.push((g.requests - g.successes.min(g.requests)).to_string());
            }
            cells
        })
        .collect();
    columns(&header, &rows, if namespaces { 2 } else { 1 })
}
