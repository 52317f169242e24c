//! `conduit check` and `conduit identity` against a real controller and a real meshed proxy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use conduit_app_cli::check::{self, Status};
use conduit_app_integration::*;
use std::net::SocketAddr;
use std::time::Duration;

fn books_registry(endpoint: SocketAddr) -> String {
    format!(
        "services:\n  - name: books\n    namespace: demo\n    ports:\n      - port: 7001\n        endpoints:\n          - address: {endpoint}\n            identity: {}\n            labels: {{pod: books-0, workload: books}}\n",
        identity_name("books")
    )
}

async fn meshed_books(ctl: &TestController) -> TestProxy {
    let (app, _) = hello_server("books").await;
    let mut vars = ctl.meshed_vars("books");
    vars.push(("CONDUIT_PROXY_INBOUND_FORWARD_ADDR".into(), app.to_string()));
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let proxy = TestProxy::spawn(config(&pairs)).await;
    until_ready(proxy.admin).await;
    proxy
}

fn options(ctl: &TestController, dir: Option<std::path::PathBuf>) -> check::Options {
    check::Options {
        controller: ctl.grpc.to_string(),
        admin: ctl.admin.to_string(),
        identity_dir: dir,
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_on_a_healthy_mesh_and_names_a_proxy_on_an_old_issuer() {
    let ctl = TestController::start_with_identity(
        &registry("books", 7001, &[]),
        Duration::from_secs(3600),
    );
    let books = meshed_books(&ctl).await;
    ctl.write_registry(&books_registry(books.inbound));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let report = check::run(&options(&ctl, None)).await;
    let text = report.to_string();
    assert!(report.passed(), "{text}");
    assert!(
        text.contains("√ trust anchor is valid for 365 more days"),
        "{text}"
    );
    assert!(text.contains("issuer CN=identity.conduit.cluster.local is a CA signed by the trust anchor, valid for 30 more days"), "{text}");
    // Thirty days left is under the 60-day warning.
    assert!(
        report
            .lines
            .iter()
            .any(|(s, l)| *s == Status::Warn && l.starts_with("issuer")),
        "{text}"
    );
    assert!(text.contains("controller gRPC"), "{text}");
    assert!(
        text.contains(&format!(
            "√ proxy books-0 ({}) is ready with a certificate for {} from the current issuer",
            books.inbound,
            identity_name("books")
        )),
        "{text}"
    );

    // From the files too, key included.
    let report = check::run(&options(&ctl, Some(ctl.identity_dir()))).await;
    assert!(report.passed(), "{report}");
    assert!(report.to_string().contains("issuer key in"), "{report}");

    // A new issuer: until books renews, its certificate is from the old one.
    ctl.rotate_issuer();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let report = check::run(&options(&ctl, None)).await;
    let text = report.to_string();
    assert!(!report.passed(), "{text}");
    assert!(text.contains("× proxy books-0"), "{text}");
    assert!(
        text.contains("from an issuer other than the current one"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_clearly_without_a_controller_or_with_a_broken_issuer() {
    let ctl = TestController::start_with_identity(
        &registry("books", 7001, &[]),
        Duration::from_secs(3600),
    );
    let dir = ctl.identity_dir();
    let broken = std::env::temp_dir().join(format!("conduit-check-broken-{}", std::process::id()));
    std::fs::create_dir_all(&broken).unwrap();
    for f in ["ca.crt", "tls.crt"] {
        std::fs::copy(dir.join(f), broken.join(f)).unwrap();
    }
    std::fs::write(broken.join("tls.key"), "not a key").unwrap();
    let report = check::run(&options(&ctl, Some(broken.clone()))).await;
    assert!(!report.passed());
    assert!(report.to_string().contains("PKCS#8"), "{report}");
    let _ = std::fs::remove_dir_all(&broken);

    let nowhere = check::Options {
        controller: "127.0.0.1:1".into(),
        admin: "127.0.0.1:1".into(),
        identity_dir: None,
        timeout: Duration::from_millis(500),
    };
    let report = check::run(&nowhere).await;
    let text = report.to_string();
    assert!(!report.passed());
    assert!(
        text.contains("× cannot read the identity certificates from the controller"),
        "{text}"
    );
    assert!(
        text.contains("× controller gRPC: no answer from 127.0.0.1:1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_shows_the_certificate_a_workload_serves() {
    let ctl = TestController::start_with_identity(
        &registry("books", 7001, &[]),
        Duration::from_secs(3600),
    );
    let books = meshed_books(&ctl).await;
    ctl.write_registry(&books_registry(books.inbound));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let admin = ctl.admin.to_string();
    let text = conduit_app_cli::identity::show(&admin, "books", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        text.starts_with(&format!("books-0 {}", books.inbound)),
        "{text}"
    );
    assert!(
        text.contains(&format!("subject:    CN={}", identity_name("books"))),
        "{text}"
    );
    assert!(
        text.contains(&format!("SAN:        DNSName({})", identity_name("books"))),
        "{text}"
    );
    assert!(
        text.contains("SAN:        URI(spiffe://cluster.local/ns/demo/sa/books)"),
        "{text}"
    );
    assert!(
        text.contains("issuer:     CN=identity.conduit.cluster.local"),
        "{text}"
    );
    assert!(text.contains("not after:"), "{text}");

    let err = conduit_app_cli::identity::show(&admin, "payments", Duration::from_secs(5))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no meshed proxy of \"payments\"") && err.contains("known workloads: books"),
        "{err}"
    );
}
