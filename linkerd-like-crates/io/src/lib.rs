//! I/O wrappers used on every proxied connection.
//!
//! - [`PrefixedIo`]: protocol detection reads the first bytes of a connection before anyone
//!   knows who will serve it. Those bytes must not be lost: `PrefixedIo` hands them out again
//!   on the first reads, then reads from the socket as usual. Writes go straight through.
//! - [`CountingIo`]: counts the bytes read and written through it into a [`Count`]er, for
//!   the `tcp_read_bytes_total` / `tcp_write_bytes_total` metrics, at the cost of one atomic add
//!   per read or write call (never per byte).
//! - [`Coalesced`]: hyper writes a message's head and body as two buffers, which a socket
//!   turns into `writev`; this joins small vectors into one plain `send`, the cheaper call.
//! - [`Batched`]: for an HTTP/2 connection's driver, gathers what one poll of its task
//!   writes and sends it in one call, where `h2` would make a call per DATA frame.
//! - [`Io`]: any connection's byte stream (TCP, TLS, a replayed prefix), for the places that
//!   box streams of several kinds behind one type.

#![forbid(unsafe_code)]

mod batch;
mod coalesce;
mod count;
mod prefixed;

pub use self::batch::{Batched, BATCH_LIMIT};
pub use self::coalesce::{Coalesced, COALESCE_LIMIT};
pub use self::count::{Count, CountingIo};
pub use self::prefixed::PrefixedIo;

/// A connection's byte stream, whatever it is made of: boxed as `Box<dyn Io>` where plain and
/// TLS connections must share one type (they are made rarely; the box costs nothing per read).
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}
