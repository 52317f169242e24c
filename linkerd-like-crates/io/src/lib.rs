//! I/O wrappers used on every proxied connection.
//!
//! - [`PrefixedIo`]: protocol detection reads the first bytes of a connection before anyone
//!   knows who will serve it. Those bytes must not be lost: `PrefixedIo` hands them out again
//!   on the first reads, then reads from the socket as usual. Writes go straight through.
//! - [`CountingIo`]: counts the bytes read and written through it into a [`Count`]er, for
//!   the `tcp_read_bytes_total` / `tcp_write_bytes_total` metrics, at the cost of one atomic add
//!   per read or write call (never per byte).

#![forbid(unsafe_code)]

mod count;
mod prefixed;

pub use self::count::{Count, CountingIo};
pub use self::prefixed::PrefixedIo;
