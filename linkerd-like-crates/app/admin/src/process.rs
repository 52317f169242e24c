//! Process metrics from `/proc`, as Prometheus clients export them.

use std::fmt::Write;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

fn start_time() -> f64 {
    static START: OnceLock<f64> = OnceLock::new();
    *START.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    })
}

/// Resident memory in bytes, from `VmRSS` in `/proc/self/status`.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Appends the process families to `out`.
pub(crate) fn encode(out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP process_start_time_seconds Time that this process started (in seconds since the UNIX epoch).\n\
         # TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {}",
        start_time().floor()
    );
    if let Some(rss) = resident_bytes() {
        let _ = writeln!(
            out,
            "# HELP process_resident_memory_bytes Resident memory size in bytes.\n\
             # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}"
        );
    }
}

/// Records the start time now, so that it is the process's, not the first scrape's.
pub fn mark_start() {
    start_time();
}
