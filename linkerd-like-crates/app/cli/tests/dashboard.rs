//! The dashboard in a real browser: headless Chromium loads it from the controller while
//! meshed traffic flows, and must show it with no error; a screenshot is kept.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use conduit_app_integration::*;
use std::time::{Duration, Instant};

/// The value of `attr` on the element carrying `marker` in `dom`.
fn attr<'a>(dom: &'a str, marker: &str, attr: &str) -> Option<&'a str> {
    let at = dom.find(marker)?;
    let tag_start = dom[..at].rfind('<')?;
    let tag = &dom[tag_start..at + dom[at..].find('>')?];
    let value = tag.split(&format!("{attr}=\"")).nth(1)?;
    value.split('"').next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_mesh_in_a_browser() {
    let Some(browser) = require_tool("chromium", "loads the dashboard headless") else {
        return;
    };
    let mesh = mesh().await;
    let traffic = keep_requesting(mesh.web.outbound, "/ms/1");
    let failing = keep_requesting(mesh.web.outbound, "/fail/1");
    let deadline = Instant::now() + Duration::from_secs(20);
    while mesh
        .golden(res("demo", "deploy", "books"), None, None, "books")
        .await
        .requests
        < 10
    {
        assert!(Instant::now() < deadline, "no traffic counted");
        tokio::time::sleep(STATS_INTERVAL).await;
    }
    // The API says what is wrong with a query.
    let rsp = get(mesh.ctl.dashboard, "/api/stat?kind=replicaset").await;
    assert_eq!(rsp.status(), 400);
    let body: serde_json::Value = serde_json::from_str(&body_string(rsp).await).unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("unknown kind"),
        "{body}"
    );
    assert_eq!(get(mesh.ctl.dashboard, "/nothing-here").await.status(), 404);
    let rsp = get(mesh.ctl.dashboard, "/api/stat?kind=deploy&namespace=demo").await;
    assert_eq!(rsp.status(), 200);
    let body: serde_json::Value = serde_json::from_str(&body_string(rsp).await).unwrap();
    assert_eq!(body["rows"].as_array().unwrap().len(), 2, "{body}");

    let url = format!(
        "http://{}/?namespace=demo&refresh=500&tap=deployment/books&limit=3",
        mesh.ctl.dashboard
    );

    // The page as the browser built it: no error, the demo's workloads with traffic, the
    // edge, books' route, and a live tap.
    // Long enough for the page's first refreshes and its tap (which ends by its limit).
    let (dom, log) = headless_chromium(&browser, &url, 8000, &["--dump-dom"]).await;
    assert_eq!(
        attr(&dom, "<body", "data-errors"),
        Some("0"),
        "{dom}\n{log}"
    );
    assert!(!log.contains("Uncaught"), "{log}");
    let loaded: u32 = attr(&dom, "<body", "data-loaded").unwrap().parse().unwrap();
    assert!(loaded >= 1, "{dom}");
    for name in ["deploy/books", "svc/books"] {
        let rps: f64 = attr(&dom, &format!("data-name=\"{name}\""), "data-rps")
            .unwrap_or_else(|| panic!("no row for {name} in {dom}"))
            .parse()
            .unwrap();
        assert!(rps > 0.0, "{name}: {rps}");
    }
    assert!(dom.contains("data-src=\"web\" data-dst=\"books\""), "{dom}");
    assert!(dom.contains("data-route=\"GET /ms/{n}\""), "{dom}");
    assert_eq!(dom.matches("data-event=\"req\"").count(), 3, "{dom}");
    assert_eq!(dom.matches("data-event=\"end\"").count(), 3, "{dom}");

    // And a picture of it, kept with the test's build output.
    let png = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    let shot = format!("--screenshot={}", png.display());
    let (_, log) = headless_chromium(&browser, &url, 8000, &[&shot]).await;
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "no screenshot ({size} bytes): {log}");
    println!("dashboard screenshot: {}", png.display());
    drop((traffic, failing));
}
