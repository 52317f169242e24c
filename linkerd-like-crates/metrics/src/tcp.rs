use crate::prom::EncodeLabels;
use crate::TlsLabel;
use crate::{Counter, Direction, Encoder, Family, Gauge, TcpSnapshot};
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Which end of a proxied connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// The connection the proxy accepted.
    Src,
    /// The connection the proxy opened.
    Dst,
}

/// Labels of the TCP metrics.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TcpLabels {
    /// Inbound or outbound.
    pub direction: Direction,
    /// Accepted or opened.
    pub peer: Peer,
    /// Where the connection was headed.
    pub target_addr: SocketAddr,
    /// The connection's TLS.
    pub tls: TlsLabel,
}

impl EncodeLabels for TcpLabels {
    fn encode_labels(&self, out: &mut String) {
        let peer = match self.peer {
            Peer::Src => "src",
            Peer::Dst => "dst",
        };
        let _ = write!(
            out,
            "direction=\"{}\",peer=\"{peer}\",target_addr=\"{}\",",
            self.direction, self.target_addr
        );
        self.tls.encode(out);
    }
}

#[derive(Debug, Default)]
struct TcpStats {
    open_total: Counter,
    close_total: Counter,
    open: Gauge,
    read_bytes: Counter,
    write_bytes: Counter,
}

/// TCP connection metrics.
#[derive(Clone, Debug, Default)]
pub struct TcpMetrics {
    family: Arc<Family<TcpLabels, TcpStats>>,
}

/// One open connection: counts its bytes, and counts it closed when dropped. Wrap the
/// connection's I/O in a [`conduit_io::CountingIo`] with it.
#[derive(Debug)]
pub struct TcpConnection {
    stats: Arc<TcpStats>,
}

impl TcpMetrics {
    /// Counts a connection opened; it is counted closed when the result is dropped.
    pub fn open(&self, labels: &TcpLabels) -> TcpConnection {
        let stats = self.family.get_or_create(labels);
        stats.open_total.incr();
        stats.open.incr();
        TcpConnection { stats }
    }

    /// Every label set's open and opened connections.
    pub fn snapshot(&self) -> Vec<TcpSnapshot> {
        self.family
            .snapshot()
            .into_iter()
            .map(|(labels, stats)| TcpSnapshot {
                direction: labels.direction,
                accepted: labels.peer == Peer::Src,
                tls: labels.tls,
                open: u64::try_from(stats.open.get()).unwrap_or(0),
                opened: stats.open_total.get(),
            })
            .collect()
    }

    /// Writes the TCP families.
    pub fn encode(&self, enc: &mut Encoder) {
        let f = &*self.family;
        enc.counters(
            "tcp_open_total",
            "Total count of opened connections.",
            f,
            |s| &s.open_total,
        );
        enc.counters(
            "tcp_close_total",
            "Total count of closed connections.",
            f,
            |s| &s.close_total,
        );
        enc.gauges(
            "tcp_open_connections",
            "Number of currently-open connections.",
            f,
            |s| &s.open,
        );
        enc.counters(
            "tcp_read_bytes_total",
            "Total count of bytes read from peers.",
            f,
            |s| &s.read_bytes,
        );
        enc.counters(
            "tcp_write_bytes_total",
            "Total count of bytes written to peers.",
            f,
            |s| &s.write_bytes,
        );
    }
}

impl conduit_io::Count for TcpConnection {
    fn read(&self, n: usize) {
        self.stats.read_bytes.add(n as u64);
    }
    fn wrote(&self, n: usize) {
        self.stats.write_bytes.add(n as u64);
    }
}

/// Counts a connection's bytes before its labels are known (a TLS handshake must finish
/// before the peer's identity is), then hands them, and every later byte, to the
/// [`TcpConnection`] it is given.
#[derive(Debug, Default)]
pub struct PendingTcp {
    early_read: AtomicU64,
    early_wrote: AtomicU64,
    conn: OnceLock<TcpConnection>,
}

impl PendingTcp {
    /// Counts into `conn` from now on, starting with the bytes counted so far. Only the
    /// first call counts.
    pub fn attach(&self, conn: TcpConnection) {
        if self.conn.set(conn).is_err() {
            return;
        }
        if let Some(conn) = self.conn.get() {
            conduit_io::Count::read(conn, self.early_read.swap(0, Ordering::Relaxed) as usize);
            conduit_io::Count::wrote(conn, self.early_wrote.swap(0, Ordering::Relaxed) as usize);
        }
    }
}

impl conduit_io::Count for PendingTcp {
    fn read(&self, n: usize) {
        match self.conn.get() {
            Some(conn) => conn.read(n),
            None => {
                self.early_read.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
    fn wrote(&self, n: usize) {
        match self.conn.get() {
            Some(conn) => conn.wrote(n),
            None => {
                self.early_wrote.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for TcpConnection {
    fn drop(&mut self) {
        self.stats.close_total.incr();
        self.stats.open.decr();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_io::Count;

    #[test]
    fn open_count_and_close() {
        let m = TcpMetrics::default();
        let labels = TcpLabels {
            direction: Direction::Inbound,
            peer: Peer::Src,
            target_addr: "10.0.0.1:80".parse().unwrap(),
            tls: TlsLabel::Disabled,
        };
        let conn = m.open(&labels);
        conn.read(10);
        conn.wrote(4);
        let mut enc = Encoder::default();
        m.encode(&mut enc);
        let text = enc.finish();
        let l = r#"{direction="inbound",peer="src",target_addr="10.0.0.1:80",tls="disabled"}"#;
        assert!(text.contains(&format!("tcp_open_connections{l} 1\n")));
        assert!(text.contains(&format!("tcp_read_bytes_total{l} 10\n")));
        assert!(text.contains(&format!("tcp_write_bytes_total{l} 4\n")));
        drop(conn);
        let mut enc = Encoder::default();
        m.encode(&mut enc);
        let text = enc.finish();
        assert!(text.contains(&format!("tcp_open_connections{l} 0\n")));
        assert!(text.contains(&format!("tcp_close_total{l} 1\n")));
        assert!(text.contains(&format!("tcp_open_total{l} 1\n")));
    }

    #[test]
    fn bytes_before_the_labels_are_known_are_kept() {
        let m = TcpMetrics::default();
        let pending = PendingTcp::default();
        pending.read(300);
        pending.wrote(200);
        let labels = TcpLabels {
            direction: Direction::Inbound,
            peer: Peer::Src,
            target_addr: "10.0.0.1:80".parse().unwrap(),
            tls: TlsLabel::Client(Some("web".into())),
        };
        pending.attach(m.open(&labels));
        pending.read(5);
        let mut enc = Encoder::default();
        m.encode(&mut enc);
        let text = enc.finish();
        let l = r#"{direction="inbound",peer="src",target_addr="10.0.0.1:80",tls="true",client_id="web"}"#;
        assert!(
            text.contains(&format!("tcp_read_bytes_total{l} 305\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("tcp_write_bytes_total{l} 200\n")),
            "{text}"
        );
    }
}
