//! The README's first command: `conduit demo` on a machine with nothing but this repository.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn demo_runs_a_mesh_and_prints_golden_metrics() {
    let out = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["demo", "--duration", "4", "--interval", "1", "--rps", "40"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");

    // The last table: one row per service, each having served requests.
    let last_table = stdout.rsplit("SERVICE").next().unwrap();
    for name in [
        "web.demo.svc.cluster.local:7000",
        "books.demo.svc.cluster.local:7001",
        "authors.demo.svc.cluster.local:7002",
    ] {
        let row = last_table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name} in:\n{stdout}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        let requests: f64 = cols[1].parse().unwrap();
        assert!(requests >= 40.0, "{row}");
        let success: f64 = cols[2].trim_end_matches('%').parse().unwrap();
        assert!(success > 50.0 && success <= 100.0, "{row}");
        let p50: f64 = cols[4].parse().unwrap();
        let p99: f64 = cols[5].parse().unwrap();
        assert!(p50 > 0.0 && p99 >= p50, "{row}");
    }
    // books' two replicas both serve: web's proxy balances over them, found through the
    // controller.
    let replicas = last_table
        .lines()
        .find(|l| l.starts_with("books replicas"))
        .unwrap_or_else(|| panic!("no replica line in:\n{stdout}"));
    for pod in ["books-0", "books-1"] {
        let share: f64 = replicas
            .split(&format!("{pod} "))
            .nth(1)
            .and_then(|rest| rest.split('%').next())
            .unwrap_or_else(|| panic!("no {pod} in {replicas}"))
            .parse()
            .unwrap();
        assert!(share >= 20.0, "{replicas}");
    }
    // web needs both back ends, whose failures are deliberate: it cannot be perfect.
    let web = last_table.lines().find(|l| l.starts_with("web.")).unwrap();
    assert!(!web.contains("100.00%"), "{web}");
}
