//! Start-up errors name what is wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn controller(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_conduit-controller"))
        .args(args)
        .args([
            "--destination-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--dashboard-addr",
            "127.0.0.1:0",
        ])
        // No cluster anywhere: no in-cluster variables and no kubeconfig.
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn without_a_cluster_kubernetes_discovery_says_so() {
    let (code, stderr) = controller(&["--discovery", "kubernetes"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--discovery kubernetes: cannot reach the Kubernetes API"),
        "{stderr}"
    );
}

#[test]
fn a_bad_registry_stops_start_up_with_its_line_and_reason() {
    let dir = std::env::temp_dir().join(format!("conduit-ctl-start-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("registry.yaml");
    std::fs::write(
        &path,
        "services:\n  - name: a\n    namespace: b\n    portz: []\n",
    )
    .unwrap();
    let (code, stderr) = controller(&["--discovery", &format!("file:{}", path.display())]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("registry.yaml") && stderr.contains("line 4"),
        "{stderr}"
    );
}

#[test]
fn a_bad_flag_names_the_flag() {
    let (code, stderr) = controller(&["--discovery", "consul"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--discovery"), "{stderr}");
}
