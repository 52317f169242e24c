//! `conduit top`: the most-requested paths of a resource, live, from a tap.

use super::{columns, latency};
use conduit_api::tap::tap_event::response_end::End;
use conduit_api::tap::tap_event::Event;
use conduit_api::tap::TapEvent;
use conduit_control_viz::json::micros;
use std::collections::HashMap;
use std::time::Duration;

/// Requests between their init and their end: at most this many are remembered; older ones
/// are dropped (their proxy lost the end, or the stream did).
const MAX_OPEN: usize = 10_000;

/// One row: a method and path's requests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    /// The authority of the last request.
    pub authority: String,
    /// Requests ended.
    pub count: u64,
    /// Of which successes (no 5xx, no gRPC error, no stream error).
    pub successes: u64,
    /// Fastest, slowest and last time to response headers, in microseconds.
    pub best_us: u64,
    /// Slowest.
    pub worst_us: u64,
    /// Last.
    pub last_us: u64,
}

#[derive(Debug)]
struct Open {
    key: (String, String),
    authority: String,
    status: u32,
    latency_us: u64,
}

/// Tallies tap events by method and path.
#[derive(Debug, Default)]
pub struct Top {
    rows: HashMap<(String, String), Row>,
    open: HashMap<(String, u64), Open>,
}

impl Top {
    /// Counts one event; a request counts when it ends.
    pub fn add(&mut self, e: &TapEvent) {
        match &e.event {
            Some(Event::RequestInit(r)) => {
                if self.open.len() >= MAX_OPEN {
                    self.open.clear();
                }
                let path = r.path.split('?').next().unwrap_or_default().to_string();
                self.open.insert(
                    (e.proxy.clone(), r.id),
                    Open {
                        key: (r.method.clone(), path),
                        authority: r.authority.clone(),
                        status: 0,
                        latency_us: 0,
                    },
                );
            }
            Some(Event::ResponseInit(r)) => {
                if let Some(open) = self.open.get_mut(&(e.proxy.clone(), r.id)) {
                    open.status = r.http_status;
                    open.latency_us = micros(r.since_request_init);
                }
            }
            Some(Event::ResponseEnd(r)) => {
                let Some(open) = self.open.remove(&(e.proxy.clone(), r.id)) else {
                    return;
                };
                let failed = open.status >= 500
                    || open.status == 0
                    || matches!(&r.end, Some(End::GrpcStatus(c)) if *c != 0)
                    || matches!(&r.end, Some(End::Error(_)));
                let row = self.rows.entry(open.key).or_default();
                let us = open.latency_us;
                if row.count == 0 || us < row.best_us {
                    row.best_us = us;
                }
                row.worst_us = row.worst_us.max(us);
                row.last_us = us;
                row.count += 1;
                if !failed {
                    row.successes += 1;
                }
                row.authority = open.authority;
            }
            None => {}
        }
    }

    /// The rows, most requested first.
    pub fn rows(&self) -> Vec<((String, String), Row)> {
        let mut rows: Vec<_> = self
            .rows
            .iter()
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        rows.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(&b.0)));
        rows
    }

    /// The table, at most `max` rows.
    pub fn render(&self, max: usize) -> String {
        let rows: Vec<Vec<String>> = self
            .rows()
            .into_iter()
            .take(max)
            .map(|((method, path), r)| {
                vec![
                    r.authority,
                    method,
                    path,
                    r.count.to_string(),
                    latency(r.best_us),
                    latency(r.worst_us),
                    latency(r.last_us),
                    format!("{:.2}%", 100.0 * r.successes as f64 / r.count.max(1) as f64),
                ]
            })
            .collect();
        columns(
            &[
                "SOURCE_AUTHORITY",
                "METHOD",
                "PATH",
                "COUNT",
                "BEST",
                "WORST",
                "LAST",
                "SUCCESS_RATE",
            ],
            &rows,
            3,
        )
    }
}

/// Taps `args`' resource and redraws the table every `refresh` until the stream ends or
/// `stop` completes.
pub async fn run(
    addr: &str,
    args: &super::tap::TapArgs,
    refresh: Duration,
    out: &mut (dyn std::io::Write + Send),
    stop: impl std::future::Future<Output = ()>,
) -> Result<Top, super::VizError> {
    let mut events = super::tap::watch(addr, args).await?;
    let mut top = Top::default();
    let mut tick = tokio::time::interval(refresh);
    tokio::pin!(stop);
    let draw = |top: &Top, out: &mut (dyn std::io::Write + Send)| {
        // Clear the screen and go home, as `top` does.
        let _ = write!(out, "\x1b[2J\x1b[H{}", top.render(40));
        let _ = out.flush();
    };
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = tick.tick() => draw(&top, out),
            event = events.message() => match event {
                Ok(Some(event)) => top.add(&event),
                Ok(None) => break,
                Err(status) => return Err(super::VizError::controller(addr, status)),
            },
        }
    }
    draw(&top, out);
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_api::tap::tap_event::{RequestInit, ResponseEnd, ResponseInit};

    fn ev(proxy: &str, event: Event) -> TapEvent {
        TapEvent {
            proxy: proxy.into(),
            event: Some(event),
            ..Default::default()
        }
    }

    fn request(top: &mut Top, proxy: &str, id: u64, path: &str, status: u32, us: u64) {
        top.add(&ev(
            proxy,
            Event::RequestInit(RequestInit {
                id,
                method: "GET".into(),
                authority: "books:7001".into(),
                path: path.into(),
                ..Default::default()
            }),
        ));
        top.add(&ev(
            proxy,
            Event::ResponseInit(ResponseInit {
                id,
                http_status: status,
                since_request_init: prost_types::Duration::try_from(Duration::from_micros(us)).ok(),
            }),
        ));
        top.add(&ev(
            proxy,
            Event::ResponseEnd(ResponseEnd {
                id,
                ..Default::default()
            }),
        ));
    }

    #[test]
    fn rows_count_paths_with_best_worst_last_and_success() {
        let mut top = Top::default();
        request(&mut top, "demo/web-0", 1, "/books/1?x=1", 200, 900);
        request(&mut top, "demo/web-1", 1, "/books/1", 500, 3000);
        request(&mut top, "demo/web-0", 2, "/books/1", 200, 1500);
        request(&mut top, "demo/web-0", 3, "/authors", 200, 100);
        let rows = top.rows();
        assert_eq!(rows[0].0, ("GET".to_string(), "/books/1".to_string()));
        let r = &rows[0].1;
        assert_eq!(
            (r.count, r.successes, r.best_us, r.worst_us, r.last_us),
            (3, 2, 900, 3000, 1500)
        );
        assert_eq!(rows[1].1.count, 1);
        let table = top.render(10);
        assert!(
            table.lines().nth(1).unwrap().contains("/books/1"),
            "{table}"
        );
        assert!(table.contains("66.67%"), "{table}");
    }
}
