//! `conduit routes`: a service's golden metrics per route of its profile.

use super::{channel, columns, golden_cells, window, Output, VizError};
use conduit_api::stats::stats_client::StatsClient;
use conduit_api::stats::{RoutesRequest, RoutesResponse};
use conduit_api::tap::Resource;
use std::time::Duration;

/// Asks the controller at `addr` for `service`'s routes, seen from `from`'s proxies (or
/// every client).
pub async fn query(
    addr: &str,
    service: Resource,
    from: Option<Resource>,
    window_: Duration,
) -> Result<RoutesResponse, VizError> {
    let mut client = StatsClient::new(channel(addr)?);
    let rsp = client
        .routes(RoutesRequest {
            service: Some(service),
            from,
            window: window(window_),
        })
        .await
        .map_err(|s| VizError::controller(addr, s))?;
    Ok(rsp.into_inner())
}

/// Renders an answer.
pub fn render(rsp: &RoutesResponse, service: &str, output: Output) -> String {
    if output == Output::Json {
        return format!("{:#}\n", conduit_control_viz::json::routes(rsp, service));
    }
    let mut header = vec![
        "ROUTE",
        "SERVICE",
        "SUCCESS",
        "RPS",
        "LATENCY_P50",
        "LATENCY_P95",
        "LATENCY_P99",
    ];
    if output == Output::Wide {
        header.push("REQUESTS");
    }
    let rows: Vec<Vec<String>> = rsp
        .rows
        .iter()
        .map(|row| {
            let mut cells = vec![row.route.clone(), service.to_string()];
            cells.extend(golden_cells(row.golden.as_ref()));
            if output == Output::Wide {
                cells.push(row.golden.unwrap_or_default().requests.to_string());
            }
            cells
        })
        .collect();
    columns(&header, &rows, 2)
}
