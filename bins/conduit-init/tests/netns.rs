//! End to end on one machine: two network namespaces as two pods joined by a veth pair,
//! `conduit-init` and a `conduit-proxy` in each, curl in pod A calling pod B's HTTP server by
//! IP. The proxies' metrics prove that both carried the request, transparently.
//!
//! Needs root (namespaces, iptables). Without root it prints why and skips, except under
//! `CI=true`, where .ci/run runs it as root and a skip would hide a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use conduit_app_integration::{in_ci, is_root, metric_value, require_tool};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const INIT: &str = env!("CARGO_BIN_EXE_conduit-init");
const PROXY_UID: &str = "2102";

fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Two namespaces and the processes in them; all removed on drop.
struct Pods {
    a: String,
    b: String,
    children: Vec<Child>,
}

impl Drop for Pods {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

impl Pods {
    fn exec(&self, ns: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).args(args);
        cmd
    }

    fn spawn(&mut self, ns: &str, args: &[&str], env: &[(&str, &str)]) {
        let child = self
            .exec(ns, args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    /// Starts `conduit-proxy` in `ns` as the proxy's own user.
    fn spawn_proxy(&mut self, ns: &str, proxy: &Path) {
        let proxy = proxy.to_str().unwrap().to_string();
        self.spawn(
            ns,
            &[
                "setpriv",
                "--reuid",
                PROXY_UID,
                "--regid",
                PROXY_UID,
                "--clear-groups",
                &proxy,
            ],
            &[
                ("CONDUIT_PROXY_LOG", "warn"),
                ("CONDUIT_PROXY_DETECT_TIMEOUT", "2s"),
            ],
        );
    }

    fn curl(&self, ns: &str, url: &str) -> Option<String> {
        let out = self
            .exec(ns, &["curl", "-sS", "--max-time", "5", "--fail", url])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn wait_for(&self, ns: &str, url: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(body) = self.curl(ns, url) {
                return body;
            }
            assert!(Instant::now() < deadline, "{url} never answered in {ns}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn proxy_binary() -> PathBuf {
    let p = Path::new(INIT).with_file_name("conduit-proxy");
    assert!(
        p.is_file(),
        "{} is missing: build the workspace (cargo test --workspace builds it)",
        p.display()
    );
    p
}

#[test]
fn two_pods_talk_through_both_proxies_transparently() {
    if !is_root() {
        assert!(!in_ci(), "CI=true: the namespace test must run as root");
        println!("skipped: needs root for network namespaces and iptables");
        return;
    }
    for tool in ["ip", "iptables", "curl", "python3", "setpriv"] {
        if require_tool(tool, "the two-pod namespace test").is_none() {
            return;
        }
    }
    let proxy = proxy_binary();
    let id = std::process::id();
    let mut pods = Pods {
        a: format!("cdt-a-{id}"),
        b: format!("cdt-b-{id}"),
        children: Vec::new(),
    };
    let (a, b) = (pods.a.clone(), pods.b.clone());
    let (veth_a, veth_b) = (format!("va{id}"), format!("vb{id}"));
    // The pods' own addresses exist only inside these namespaces.
    let (ip_a, ip_b) = ("10.237.0.1", "10.237.0.2");
    sh(&["ip", "netns", "add", &a]);
    sh(&["ip", "netns", "add", &b]);
    sh(&[
        "ip", "link", "add", &veth_a, "netns", &a, "type", "veth", "peer", "name", &veth_b,
        "netns", &b,
    ]);
    for (ns, dev, ip) in [(&a, &veth_a, ip_a), (&b, &veth_b, ip_b)] {
        sh(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            dev,
        ]);
        sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        let init = pods
            .exec(ns, &[INIT, "--proxy-uid", PROXY_UID])
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "conduit-init: {}",
            String::from_utf8_lossy(&init.stderr)
        );
    }

    // Pod B: an HTTP server that knows nothing of the mesh, and its proxy.
    pods.spawn(
        &b,
        &["python3", "-m", "http.server", "8080", "--bind", "0.0.0.0"],
        &[],
    );
    pods.spawn_proxy(&b, &proxy);
    // Pod A: just the proxy; the "application" is curl.
    pods.spawn_proxy(&a, &proxy);
    pods.wait_for(&a, "http://127.0.0.1:4191/ready");
    pods.wait_for(&b, "http://127.0.0.1:4191/ready");
    pods.wait_for(&b, "http://127.0.0.1:8080/");

    let url = format!("http://{ip_b}:8080/");
    for _ in 0..3 {
        let body = pods.wait_for(&a, &url);
        assert!(body.contains("Directory listing"), "{body}");
    }

    let target = format!("target_addr=\"{ip_b}:8080\"");
    let out_metrics = pods.wait_for(&a, "http://127.0.0.1:4191/metrics");
    let sent = metric_value(
        &out_metrics,
        "request_total",
        &["direction=\"outbound\"", &target],
    );
    assert!(
        sent >= Some(3.0),
        "pod A's proxy did not carry the requests:\n{out_metrics}"
    );
    let in_metrics = pods.wait_for(&b, "http://127.0.0.1:4191/metrics");
    let received = metric_value(
        &in_metrics,
        "request_total",
        &["direction=\"inbound\"", &target],
    );
    assert!(
        received >= Some(3.0),
        "pod B's proxy did not carry the requests:\n{in_metrics}"
    );
    let ok = metric_value(
        &in_metrics,
        "response_total",
        &["direction=\"inbound\"", &target, "status_code=\"200\""],
    );
    assert!(ok >= Some(3.0), "{in_metrics}");

    // Each curl arrived over its own redirected connection.
    let tcp = metric_value(
        &in_metrics,
        "tcp_open_total",
        &["direction=\"inbound\"", "peer=\"src\""],
    );
    assert!(tcp >= Some(3.0), "{in_metrics}");
}

#[test]
fn dry_run_prints_rules_and_bad_ports_are_refused() {
    let out = Command::new(INIT)
        .args([
            "--dry-run",
            "--outbound-ports-to-ignore",
            "3306,6000-6010",
            "--proxy-uid",
            "7",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("iptables -t nat -A CONDUIT_OUTBOUND -p tcp --dport 6000:6010 -j RETURN"),
        "{text}"
    );
    assert!(text.contains("--uid-owner 7 -j RETURN"), "{text}");

    let bad = Command::new(INIT)
        .args(["--dry-run", "--inbound-ports-to-ignore", "99999"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--inbound-ports-to-ignore"));
}
