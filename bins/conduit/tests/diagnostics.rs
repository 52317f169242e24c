//! `conduit diagnostics endpoints` against a real controller.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use conduit_app_integration::{registry, TestController};
use std::process::Command;

fn endpoints(controller: &str, authority: &str) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args([
            "diagnostics",
            "endpoints",
            authority,
            "--controller",
            controller,
        ])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn shows_what_the_controller_returns_for_a_name() {
    let addrs = [
        "127.0.1.2:4143".parse().unwrap(),
        "127.0.1.4:4143".parse().unwrap(),
    ];
    let ctl = TestController::start(&registry("books", 7001, &addrs));
    let grpc = ctl.grpc.to_string();

    let (ok, stdout, stderr) = endpoints(&grpc, "books.demo.svc.cluster.local:7001");
    assert!(ok, "{stderr}");
    let rows: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert!(
        rows[0].starts_with("127.0.1.2") && rows[0].contains("4143"),
        "{stdout}"
    );
    assert!(rows[1].starts_with("127.0.1.4"), "{stdout}");

    let (ok, stdout, _) = endpoints(&grpc, "nothing.demo.svc.cluster.local:80");
    assert!(ok);
    assert!(
        stdout.contains("not a service the controller knows"),
        "{stdout}"
    );
}

#[test]
fn says_clearly_when_no_controller_answers() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = unused.local_addr().unwrap().to_string();
    drop(unused);
    let (ok, _, stderr) = endpoints(&addr, "books.demo.svc.cluster.local:7001");
    assert!(!ok);
    assert!(stderr.contains("no answer from the controller"), "{stderr}");
}
