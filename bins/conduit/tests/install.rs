//! `conduit install` validated against the Kubernetes API schemas by a real validator
//! (PyPI's `kubernetes-validate`, strict: an unknown field fails), for the Kubernetes
//! version the controller's client is built for; with an issuer of the user's own too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use conduit_app_integration::require_tool;
use std::process::Command;

const CONDUIT: &str = env!("CARGO_BIN_EXE_conduit");
/// The API version k8s-openapi is built for (its `v1_33` feature).
const KUBERNETES: &str = "1.33.0";

fn validate(validator: &std::path::Path, manifests: &str, name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, manifests).unwrap();
    let out = Command::new(validator)
        .args(["--strict", "-k", KUBERNETES])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{name} does not validate:\n{text}");
    text
}

fn install(args: &[&str]) -> std::process::Output {
    Command::new(CONDUIT)
        .arg("install")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn install_writes_manifests_the_kubernetes_schemas_accept() {
    let Some(validator) = require_tool("kubernetes-validate", "validating `conduit install`")
    else {
        return;
    };
    let out = install(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifests = String::from_utf8(out.stdout).unwrap();
    let report = validate(&validator, &manifests, "install.yaml");
    for object in [
        "namespace/conduit",
        "customresourcedefinition/serviceprofiles.conduit.io",
        "customresourcedefinition/servers.policy.conduit.io",
        "customresourcedefinition/authorizationpolicies.policy.conduit.io",
        "clusterrole/conduit-controller-conduit",
        "secret/conduit-identity-issuer",
        "configmap/conduit-identity-trust-roots",
        "deployment/conduit-controller",
        "service/conduit-controller",
    ] {
        assert!(
            report.contains(&format!("passed for resource {object}")),
            "{object}:\n{report}"
        );
    }
    // The validator is not lenient: a field the schema lacks fails it.
    let broken = manifests.replacen("spec:\n", "spec:\n  replica: 1\n", 1);
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("broken.yaml");
    std::fs::write(&path, broken).unwrap();
    let refused = Command::new(&validator)
        .args(["--strict", "-k", KUBERNETES])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!refused.status.success());

    // A given issuer goes into the Secret; one that does not chain is refused by name.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("install-issuer");
    let _ = std::fs::remove_dir_all(&dir);
    let made = Command::new(CONDUIT)
        .args(["issuer"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(made.status.success());
    let file = |f: &str| dir.join(f).display().to_string();
    let given = install(&[
        "--controller-namespace",
        "mesh",
        "--identity-trust-anchors-file",
        &file("ca.crt"),
        "--identity-issuer-certificate-file",
        &file("tls.crt"),
        "--identity-issuer-key-file",
        &file("tls.key"),
    ]);
    assert!(
        given.status.success(),
        "{}",
        String::from_utf8_lossy(&given.stderr)
    );
    let manifests = String::from_utf8(given.stdout).unwrap();
    validate(&validator, &manifests, "install-given.yaml");
    assert!(manifests.contains("--identity-issuer-secret=mesh/conduit-identity-issuer"));
    let wrong = install(&[
        "--identity-trust-anchors-file",
        &file("tls.crt"),
        "--identity-issuer-certificate-file",
        &file("tls.crt"),
        "--identity-issuer-key-file",
        &file("tls.key"),
    ]);
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(err.contains("conduit install: the issuer"), "{err}");
}
