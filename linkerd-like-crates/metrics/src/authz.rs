use crate::prom::{escape_label_value, EncodeLabels};
use crate::{Counter, Encoder, Family};
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;

/// Labels of a refusal.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct DenyLabels {
    server: Arc<str>,
    target_addr: SocketAddr,
    reason: &'static str,
}

impl EncodeLabels for DenyLabels {
    fn encode_labels(&self, out: &mut String) {
        out.push_str("srv_name=\"");
        escape_label_value(&self.server, out);
        let _ = write!(
            out,
            "\",target_addr=\"{}\",reason=\"{}\"",
            self.target_addr, self.reason
        );
    }
}

/// Inbound requests and connections refused by policy, by server, port and reason.
#[derive(Clone, Debug, Default)]
pub struct AuthzMetrics {
    http: Arc<Family<DenyLabels, Counter>>,
    tcp: Arc<Family<DenyLabels, Counter>>,
}

impl AuthzMetrics {
    /// Counts an HTTP request refused.
    pub fn http_denied(&self, server: &Arc<str>, target_addr: SocketAddr, reason: &'static str) {
        Self::count(&self.http, server, target_addr, reason);
    }

    /// Counts a TCP connection refused.
    pub fn tcp_denied(&self, server: &Arc<str>, target_addr: SocketAddr, reason: &'static str) {
        Self::count(&self.tcp, server, target_addr, reason);
    }

    fn count(
        family: &Family<DenyLabels, Counter>,
        server: &Arc<str>,
        target_addr: SocketAddr,
        reason: &'static str,
    ) {
        family
            .get_or_create(&DenyLabels {
                server: server.clone(),
                target_addr,
                reason,
            })
            .incr();
    }

    /// Writes the families.
    pub fn encode(&self, enc: &mut Encoder) {
        enc.counters(
            "inbound_http_authz_deny_total",
            "Inbound HTTP requests refused by authorization policy.",
            &self.http,
            |c| c,
        );
        enc.counters(
            "inbound_tcp_authz_deny_total",
            "Inbound connections refused by authorization policy.",
            &self.tcp,
            |c| c,
        );
    }
}
