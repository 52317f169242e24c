//! The README's first command: `conduit demo` on a machine with nothing but this repository.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

/// The rows of the section of `screen` under the heading that starts with `heading`.
fn section<'a>(screen: &'a str, heading: &str) -> Vec<Vec<&'a str>> {
    let body = screen
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("no {heading} in:\n{screen}"));
    body.lines()
        .skip(2) // the rest of the heading line, and the column names
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect()
}

/// The demo's dashboard in headless Chromium: the page loads with no error and shows the
/// demo's three deployments with traffic; a screenshot is kept with the build output.
fn check_dashboard(chromium: &std::path::Path) {
    let png = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-dashboard.png");
    let _ = std::fs::remove_file(&png);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let run = |extra: &str| {
        rt.block_on(conduit_app_integration::headless_chromium(
            chromium,
            "http://127.0.0.1:8084/?refresh=500&tap=deployment/web&limit=3",
            5000,
            &[extra],
        ))
    };
    let (dom, log) = run("--dump-dom");
    assert!(dom.contains("data-errors=\"0\""), "{dom}\n{log}");
    assert!(!log.contains("Uncaught"), "{log}");
    for name in ["deploy/web", "deploy/books", "deploy/authors"] {
        let rps: f64 = dom
            .split(&format!("data-name=\"{name}\" data-rps=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no row for {name} in {dom}"))
            .parse()
            .unwrap();
        assert!(rps > 0.0, "{name}: {rps}");
    }
    assert!(
        dom.contains("data-event=\"req\""),
        "no live tap rows: {dom}"
    );
    let (_, log) = run(&format!("--screenshot={}", png.display()));
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "no screenshot ({size} bytes): {log}");
    println!("demo dashboard screenshot: {}", png.display());
}

#[test]
fn demo_runs_a_mesh_and_prints_golden_metrics() {
    let demo = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["demo", "--duration", "12", "--interval", "1", "--rps", "40"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While it runs, its dashboard.
    let chromium = conduit_app_integration::require_tool("chromium", "loads the demo's dashboard");
    if let Some(chromium) = chromium {
        std::thread::sleep(std::time::Duration::from_secs(4));
        check_dashboard(&chromium);
    }
    let out = demo.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("conduit tap deploy/web -n demo"),
        "{stdout}"
    );

    // The last screen, from the controller's Stats API.
    let screen = stdout
        .rsplit("DEPLOYMENTS in namespace demo")
        .next()
        .unwrap();
    let screen = format!("DEPLOYMENTS{screen}");
    // NAME MESHED SUCCESS RPS P50 P95 P99 TCP_CONN: every deployment meshed and serving.
    let deploys = section(&screen, "DEPLOYMENTS");
    for name in ["deploy/web", "deploy/books", "deploy/authors"] {
        let row = deploys
            .iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("no row for {name} in:\n{screen}"));
        let pods = if name == "deploy/books" { "2/2" } else { "1/1" };
        assert_eq!(row[1], pods, "{row:?}");
        let success: f64 = row[2].trim_end_matches('%').parse().unwrap();
        assert!(success > 50.0 && success <= 100.0, "{row:?}");
        let rps: f64 = row[3].trim_end_matches("rps").parse().unwrap();
        assert!(rps > 0.0, "{row:?}");
        let p50: f64 = row[4].trim_end_matches("ms").parse().unwrap();
        let p99: f64 = row[6].trim_end_matches("ms").parse().unwrap();
        assert!(p50 > 0.0 && p99 >= p50, "{row:?}");
    }
    // web needs both back ends, whose failures are deliberate: it cannot be perfect.
    let web = deploys.iter().find(|r| r[0] == "deploy/web").unwrap();
    assert_ne!(web[2], "100.00%", "{web:?}");
    // books' two replicas both serve: web's proxy balances over them, found through the
    // controller.
    let pods = section(&screen, "PODS");
    for pod in ["po/books-0", "po/books-1"] {
        let row = pods
            .iter()
            .find(|r| r[0] == pod)
            .unwrap_or_else(|| panic!("no row for {pod} in:\n{screen}"));
        assert_ne!(row[3], "-", "{pod} served nothing: {row:?}");
    }
    // books' profile route, and the requests no route matched.
    let routes = section(&screen, "ROUTES of svc/books");
    assert_eq!(
        routes[0][..3],
        ["GET", "/books/{id}", "svc/books"],
        "{screen}"
    );
    // web calls both back ends over mTLS, with both identities.
    let edges = section(&screen, "EDGES");
    for dst in ["deploy/books", "deploy/authors"] {
        let edge = edges
            .iter()
            .find(|r| r[0] == "deploy/web" && r[1] == dst)
            .unwrap_or_else(|| panic!("no edge to {dst} in:\n{screen}"));
        assert_eq!(edge[4], "√", "{edge:?}");
        assert_eq!(edge[5], "web.demo", "{edge:?}");
    }
}
