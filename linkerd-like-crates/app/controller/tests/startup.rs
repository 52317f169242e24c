//! A controller that cannot set up its identity service stops at start-up, naming the flag
//! and what to do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use conduit_app_admin::trace::Unmanaged;
use conduit_app_controller::{Args, ObjectRef};
use std::sync::Arc;

fn args(name: &str) -> (Args, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("conduit-ctl-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let registry = dir.join("registry.yaml");
    std::fs::write(&registry, "services: []\n").unwrap();
    let mut args = Args::with_registry(
        registry,
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    );
    args.dashboard_addr = "127.0.0.1:0".parse().unwrap();
    (args, dir)
}

async fn start_error(args: Args) -> String {
    match conduit_app_controller::bind(args, Arc::new(Unmanaged)).await {
        Ok(_) => panic!("the controller started"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn an_issuer_secret_without_kubernetes_or_an_empty_issuer_dir_stops_start_up() {
    let (mut with_secret, dir) = args("issuer-secret");
    with_secret.identity_issuer_secret = Some(ObjectRef {
        namespace: "conduit".into(),
        name: "conduit-identity-issuer".into(),
    });
    let err = start_error(with_secret).await;
    assert!(err.contains("--identity-issuer-secret"), "{err}");
    assert!(err.contains("--discovery kubernetes"), "{err}");

    let (mut with_dir, _) = args("issuer-dir");
    with_dir.identity_dir = Some(dir.join("missing"));
    let err = start_error(with_dir).await;
    assert!(err.contains("--identity-dir"), "{err}");
    assert!(err.contains("ca.crt"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
