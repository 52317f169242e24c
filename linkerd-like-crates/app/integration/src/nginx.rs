//! A real nginx as an upstream, for behaviour that users' upstreams have and a hand-written
//! server would only imitate (HTTP/2 connections that nginx ends after so many requests).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An nginx serving `server` blocks on loopback; stopped when dropped.
pub struct Nginx {
    child: Child,
    dir: PathBuf,
    /// Where its first `server` listens.
    pub addr: SocketAddr,
}

impl Nginx {
    /// Starts nginx with one `server` block, `server_body` (its directives after `listen`),
    /// listening on a free port over HTTP/2 when `h2`; `None` when nginx is missing (outside
    /// CI, where that is a skip; see [`crate::require_tool`]).
    pub fn start(h2: bool, http_directives: &str, server_body: &str, why: &str) -> Option<Self> {
        let nginx = crate::require_tool("nginx", why)?;
        let addr = free_port();
        let dir = std::env::temp_dir().join(format!(
            "conduit-nginx-{}-{}",
            std::process::id(),
            addr.port()
        ));
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let listen = if h2 {
            format!("{addr} http2")
        } else {
            addr.to_string()
        };
        let conf = format!(
            "worker_processes 1;\ndaemon off;\nmaster_process off;\npid {dir}/nginx.pid;\n\
             error_log {dir}/logs/error.log warn;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {dir}; proxy_temp_path {dir};\n  \
             fastcgi_temp_path {dir}; uwsgi_temp_path {dir}; scgi_temp_path {dir};\n  \
             {http_directives}\n  server {{ listen {listen}; {server_body} }}\n}}\n",
            dir = dir.display()
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut nginx = Self { child, dir, addr };
        let deadline = Instant::now() + crate::TIMEOUT;
        while std::net::TcpStream::connect(addr).is_err() {
            if let Some(status) = nginx.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(nginx.dir.join("logs/error.log"));
                panic!("nginx exited ({status}): {log:?}");
            }
            assert!(Instant::now() < deadline, "nginx did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
