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

#[test]
fn demo_runs_a_mesh_and_prints_golden_metrics() {
    let out = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["demo", "--duration", "5", "--interval", "1", "--rps", "40"])
        .output()
        .unwrap();
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
