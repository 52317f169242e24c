//! Tests that need a network of their own: iptables rules that must not touch the machine's,
//! and a copy of every byte that crosses a link.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// The variable that tells a re-run test it is already inside its namespace.
const INSIDE: &str = "CONDUIT_TEST_IN_NETNS";

/// True when this process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Runs the test `name` (the function that calls this, by its full name without the crate,
/// as `cargo test -- --exact` takes it) in a network namespace of its own, with loopback up,
/// where `body` may program iptables freely: the test binary runs itself again under
/// `unshare --net`. Returns false, having printed why, when the test cannot run here (not
/// root, or a tool missing); under `CI=true` that is a failure instead.
pub fn in_own_netns(name: &str, body: impl FnOnce()) -> bool {
    if std::env::var(INSIDE).is_ok_and(|v| v == name) {
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(up.success(), "ip link set lo up");
        body();
        return true;
    }
    if !is_root() {
        assert!(!crate::in_ci(), "CI=true: {name} must run as root");
        println!("skipped: {name} needs root for a network namespace and iptables");
        return false;
    }
    for tool in ["unshare", "ip", "iptables"] {
        if crate::require_tool(tool, "a test in a network namespace of its own").is_none() {
            return false;
        }
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INSIDE, name)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(out.status.success(), "{name} failed in its namespace");
    // A filter that matched nothing would pass without running anything.
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "{name} did not run in its namespace"
    );
    true
}

/// Runs `iptables` with `args`, failing the test if it fails.
pub fn iptables(args: &[&str]) {
    let out = Command::new("iptables").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "iptables {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn copy(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    tap: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match tokio::io::AsyncReadExt::read(&mut r, &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        tap.lock().unwrap().extend_from_slice(&buf[..n]);
        if w.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
}

/// Fails the test if any of `texts` appears in `wire`: what a wiretap saw must be ciphertext.
pub fn assert_none_in_clear(wire: &[u8], texts: &[&[u8]]) {
    for clear in texts {
        assert!(
            !wire.windows(clear.len()).any(|w| w == *clear),
            "{:?} crossed the wire in clear",
            String::from_utf8_lossy(clear)
        );
    }
}

/// A TCP relay to `to` that keeps a copy of every byte it carries, both ways: a look at
/// the wire between two proxies.
pub async fn wiretap(to: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let tap = seen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let tap = tap.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(to).await else {
                    return;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::join!(copy(cr, sw, tap.clone()), copy(sr, cw, tap));
            });
        }
    });
    (addr, seen)
}
