//! The dashboard in a real browser: headless Chromium loads it from the controller while
//! meshed traffic flows, and must show it with no error; a screenshot is kept.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use conduit_app_integration::*;
use std::time::{Duration, Instant};

/// Runs headless Chromium on `url` with `extra` flags; its stdout and stderr.
async fn chromium(chromium: &std::path::Path, url: &str, extra: &[&str]) -> (String, String) {
    let profile = tempdir("chromium-profile");
    let mut cmd = tokio::process::Command::new(chromium);
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--window-size=1400,1500",
        // Wait for the page's first refreshes and its tap (which ends by its limit).
        "--virtual-time-budget=8000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("chromium finishes")
        .unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("conduit-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

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
    let (dom, log) = chromium(&browser, &url, &["--dump-dom"]).await;
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
    let (_, log) = chromium(
        &browser,
        &url,
        &[&format!("--screenshot={}", png.display())],
    )
    .await;
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "no screenshot ({size} bytes): {log}");
    println!("dashboard screenshot: {}", png.display());
    drop((traffic, failing));
}
