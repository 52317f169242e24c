//! The `conduit-proxy` binary: start-up errors, the admin server, signals, promtool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use conduit_app_integration::*;
use http_body_util::Full;
use std::net::SocketAddr;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_conduit-proxy");

struct Running {
    child: Child,
    outbound: SocketAddr,
    admin: SocketAddr,
}

/// Starts the binary on ephemeral ports with `vars` and reads its addresses from stderr.
async fn start(vars: &[(&str, &str)]) -> Running {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR", "127.0.0.1:0")
        .env("CONDUIT_PROXY_INBOUND_LISTEN_ADDR", "127.0.0.1:0")
        .env("CONDUIT_PROXY_ADMIN_LISTEN_ADDR", "127.0.0.1:0")
        .envs(vars.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = bounded(lines.next_line())
        .await
        .unwrap()
        .expect("an address line");
    // "conduit-proxy: outbound A inbound B admin C"
    let words: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(words[1], "outbound", "{first}");
    let outbound = words[2].parse().unwrap();
    let admin = words[6].parse().unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Running {
        child,
        outbound,
        admin,
    }
}

async fn send(addr: SocketAddr, method: &str, path: &str, body: &'static str) -> (u16, String) {
    let mut client = http1_client(addr).await;
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .body(Full::from(body))
        .unwrap();
    let rsp = bounded(client.send_request(req)).await.unwrap();
    let status = rsp.status().as_u16();
    (status, body_string(rsp).await)
}

#[tokio::test]
async fn bad_configuration_stops_startup_naming_the_variable() {
    for (var, value) in [
        ("CONDUIT_PROXY_DETECT_TIMEOUT", "soon"),
        ("CONDUIT_PROXY_INBOUND_LISTEN_ADDR", "nowhere"),
        ("CONDUIT_PROXY_LOG", "[[["),
    ] {
        let out = Command::new(BIN)
            .env_clear()
            .env(var, value)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{var}: {err}");
    }
}

#[tokio::test]
async fn an_address_in_use_names_its_variable() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .env_clear()
        .env("CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR", "127.0.0.1:0")
        .env("CONDUIT_PROXY_INBOUND_LISTEN_ADDR", "127.0.0.1:0")
        .env("CONDUIT_PROXY_ADMIN_LISTEN_ADDR", &addr)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CONDUIT_PROXY_ADMIN_LISTEN_ADDR"), "{err}");
}

#[tokio::test]
async fn admin_endpoints() {
    let mut proxy = start(&[("CONDUIT_PROXY_LOG", "info")]).await;
    let admin = proxy.admin;
    assert_eq!(send(admin, "GET", "/ready", "").await.0, 200);
    assert_eq!(send(admin, "GET", "/live", "").await.0, 200);
    assert_eq!(send(admin, "GET", "/nope", "").await.0, 404);
    assert_eq!(send(admin, "GET", "/shutdown", "").await.0, 405);

    assert_eq!(
        send(admin, "GET", "/proxy-log-level", "").await,
        (200, "info\n".into())
    );
    assert_eq!(
        send(admin, "PUT", "/proxy-log-level", "warn,conduit=debug")
            .await
            .0,
        204
    );
    assert_eq!(
        send(admin, "GET", "/proxy-log-level", "").await,
        (200, "warn,conduit=debug\n".into())
    );
    let (status, body) = send(admin, "PUT", "/proxy-log-level", "[[[").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        send(admin, "GET", "/proxy-log-level", "").await.1,
        "warn,conduit=debug\n",
        "an invalid filter leaves the old one"
    );

    assert_eq!(send(admin, "POST", "/shutdown", "").await.0, 200);
    let status = bounded(proxy.child.wait()).await.unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let (slow, _) = http_server(|_req| async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        http::Response::new(Full::from("done"))
    })
    .await;
    let mut proxy = start(&[]).await;
    let outbound = proxy.outbound;
    let in_flight =
        tokio::spawn(async move { send(outbound, "GET", &format!("http://{slow}/"), "").await });
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let pid = proxy.child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    assert_eq!(bounded(in_flight).await.unwrap(), (200, "done".into()));
    let status = bounded(proxy.child.wait()).await.unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn metrics_pass_promtool() {
    let Some(promtool) = require_tool("promtool", "checks the /metrics format") else {
        return;
    };
    let (upstream, _) = hello_server("ok").await;
    let proxy = start(&[]).await;
    for path in ["/a", "/b"] {
        let (status, _) = send(
            proxy.outbound,
            "GET",
            &format!("http://{upstream}{path}"),
            "",
        )
        .await;
        assert_eq!(status, 200);
    }
    let (status, text) = send(proxy.admin, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    assert!(text.contains("request_total{"), "{text}");
    assert!(text.contains("process_resident_memory_bytes "), "{text}");

    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    let mut stdin = check.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = bounded(check.wait_with_output()).await.unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Exit 3 is "lint problems"; the only one allowed is the `_ms` suffix kept for
    // compatibility with Linkerd's metric names. Anything else (or exit 1) fails.
    let problems: Vec<&str> = report
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| *l != "response_latency_ms metric names should not contain abbreviated units")
        .collect();
    assert!(matches!(out.status.code(), Some(0) | Some(3)), "{report}");
    assert!(problems.is_empty(), "promtool found: {problems:?}");
}

/// The environment the running proxy (after any re-execution) was started with.
fn environ_of(proxy: &Running) -> Vec<String> {
    let pid = proxy.child.id().unwrap();
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[tokio::test]
async fn it_runs_with_its_malloc_tunables_unless_the_operator_set_some() {
    let proxy = start(&[]).await;
    let env = environ_of(&proxy);
    assert!(
        env.iter()
            .any(|v| v == "GLIBC_TUNABLES=glibc.malloc.tcache_count=32"),
        "{env:?}"
    );
    // Still the proxy, serving, in the process that was started, under its own name (not
    // `exe`, from the `/proc/self/exe` it executed).
    let (status, _) = send(proxy.admin, "GET", "/live", "").await;
    assert_eq!(status, 200);
    let pid = proxy.child.id().unwrap();
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(name.trim_end(), "conduit-proxy");

    let own = "glibc.malloc.tcache_count=7";
    let proxy = start(&[("GLIBC_TUNABLES", own)]).await;
    let env = environ_of(&proxy);
    let tunables: Vec<&String> = env
        .iter()
        .filter(|v| v.starts_with("GLIBC_TUNABLES="))
        .collect();
    assert_eq!(tunables, [&format!("GLIBC_TUNABLES={own}")]);
}
