//! glibc's allocator, tuned for a proxy.
//!
//! glibc hands a thread's most recently freed small blocks (up to 1,032 bytes) back from a
//! per-thread cache, the tcache, without locking, searching or splitting. It keeps 7 blocks
//! of each size. A proxy frees the same few sizes in bursts as deep as its concurrency: the
//! heads, header maps and futures of every request in flight. Past the 7th, each block falls
//! to glibc's bins, where freeing merges it with its neighbours and allocating searches and
//! splits again. Under callgrind, with 64 requests in flight, that was 3.5 to 4.5% of all
//! the proxy's instructions (one proxy, and each side of a meshed pair).
//!
//! The count is a trade of CPU for memory: blocks kept per size are not merged for other
//! sizes. 32 per size saves three quarters of that on one proxy and a third to a half on a
//! meshed pair. 256 saved all of it, but at a price in peak RSS: 10.7 MiB over the
//! benchmark's nine rounds, past the 10 MiB it is held to. Three rounds of one proxy, side
//! by side, peaked at 8.9 MiB with glibc's 7, 9.2 with 32, 9.5 with 64 and 10.2 with 256.
//!
//! glibc reads that count only from the `GLIBC_TUNABLES` environment variable, at start. So
//! the proxy, when the variable is unset, executes itself again once with it set (the same
//! process: same pid, arguments and open files). An operator's own `GLIBC_TUNABLES` is left
//! alone, and on any other C library nothing is done.
//!
//! Executing `/proc/self/exe` makes the kernel name the process `exe`, the last part of that
//! path, and that name is what `top`, `ps -e`, `pgrep` and `perf` show. So the new image
//! takes back the name its first one had, the last part of its `argv[0]`, as the kernel
//! would have given it.

use std::io;

/// The environment variable glibc reads its tunables from.
pub const TUNABLES_VAR: &str = "GLIBC_TUNABLES";

/// The tunables the proxy runs with when the operator sets none.
pub const PROXY_TUNABLES: &str = "glibc.malloc.tcache_count=32";

/// Executes this program again with [`PROXY_TUNABLES`] when `GLIBC_TUNABLES` is unset.
///
/// Returns only when nothing was to be done (`Ok`) or when the execution failed (`Err`: the
/// proxy can go on as it is). Call it first in `main`, before any thread starts.
pub fn reexec_with_tunables() -> io::Result<()> {
    if std::env::var_os(TUNABLES_VAR).is_some() {
        // Only a name: a proxy that cannot take it back runs all the same.
        let _ = restore_name();
        return Ok(());
    }
    reexec()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn reexec() -> io::Result<()> {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_default();
    // `/proc/self/exe` is the running image even if its file has since been replaced.
    Err(std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env(TUNABLES_VAR, PROXY_TUNABLES)
        .exec())
}

/// Renames the process after its `argv[0]` if [`reexec`] left it named `exe`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn restore_name() -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    // The kernel keeps 15 bytes of a name.
    const MAX_NAME: usize = 15;
    if std::fs::read("/proc/self/comm")? != b"exe\n" {
        return Ok(());
    }
    let arg0 = std::env::args_os().next().unwrap_or_default();
    let Some(name) = std::path::Path::new(&arg0).file_name() else {
        return Ok(());
    };
    let name = name.as_bytes();
    std::fs::write("/proc/self/comm", &name[..name.len().min(MAX_NAME)])
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn reexec() -> io::Result<()> {
    Ok(())
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn restore_name() -> io::Result<()> {
    Ok(())
}
