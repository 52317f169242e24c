use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Vectored writes up to this many bytes are copied into one buffer and written with one
/// plain write. Copying a few KiB costs tens of nanoseconds; the kernel's `writev` path
/// (iovec import, the VFS write hooks) cost about 170 ns more per call than `send` in a
/// profile of the proxy at 60k requests/s.
pub const COALESCE_LIMIT: usize = 4096;

thread_local! {
    static JOINED: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(Vec::with_capacity(COALESCE_LIMIT));
}

/// An I/O stream whose small vectored writes become single plain writes.
///
/// hyper writes a message's head and body as separate buffers (and a lone head as a vector
/// of one), which a TCP stream turns into `writev`. On loopback, where a proxy's cost is
/// mostly system calls, `send` is measurably cheaper. Larger writes stay vectored: there the
/// copy would cost more than the call saves.
#[pin_project::pin_project]
#[derive(Debug)]
pub struct Coalesced<I> {
    #[pin]
    io: I,
}

impl<I> Coalesced<I> {
    /// Wraps `io`.
    pub fn new(io: I) -> Self {
        Self { io }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &I {
        &self.io
    }

    /// The wrapped stream.
    pub fn into_inner(self) -> I {
        self.io
    }
}

impl<I: AsyncRead> AsyncRead for Coalesced<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl<I: AsyncWrite> AsyncWrite for Coalesced<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let io = self.project().io;
        let mut nonempty = bufs.iter().filter(|b| !b.is_empty());
        let (first, second) = (nonempty.next(), nonempty.next());
        let Some(first) = first else {
            return Poll::Ready(Ok(0));
        };
        if second.is_none() {
            return io.poll_write(cx, first);
        }
        let total = bufs.iter().map(|b| b.len()).sum::<usize>();
        if total > COALESCE_LIMIT {
            return io.poll_write_vectored(cx, bufs);
        }
        // One buffer per thread, reused: a stack array would be zeroed whole on every call,
        // and one per connection would cost every connection its memory.
        // A stream nested below this one (under TLS, say) may find the buffer in use: it
        // then writes the vector as it is.
        JOINED.with(|cell| match cell.try_borrow_mut() {
            Ok(mut joined) => {
                joined.clear();
                for b in bufs {
                    joined.extend_from_slice(b);
                }
                // A short write reports a prefix of the concatenation, as `writev` would.
                io.poll_write(cx, &joined)
            }
            Err(_) => io.poll_write_vectored(cx, bufs),
        })
    }

    fn is_write_vectored(&self) -> bool {
        // A stream that cannot write vectors is better served by its writer's own
        // flattening (hyper then copies into one buffer) than by one buffer per call.
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::IoSlice;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Records each write call's size, accepting at most `cap` bytes per call.
    #[derive(Default)]
    struct Calls {
        plain: Vec<usize>,
        vectored: Vec<usize>,
        data: Vec<u8>,
        cap: usize,
        /// Says it cannot write vectors, as a stream without `writev` would.
        plain_only: bool,
    }

    impl AsyncWrite for Calls {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.cap);
            self.plain.push(n);
            self.data.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.cap - n);
                self.data.extend_from_slice(&b[..take]);
                n += take;
            }
            self.vectored.push(n);
            Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            !self.plain_only
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn calls(cap: usize) -> Coalesced<Calls> {
        Coalesced::new(Calls {
            cap,
            ..Calls::default()
        })
    }

    #[tokio::test]
    async fn small_vectors_become_one_plain_write() {
        let mut io = calls(usize::MAX);
        let bufs = [
            IoSlice::new(b"head "),
            IoSlice::new(b""),
            IoSlice::new(b"body"),
        ];
        assert_eq!(io.write_vectored(&bufs).await.unwrap(), 9);
        let single = [IoSlice::new(b""), IoSlice::new(b"only")];
        assert_eq!(io.write_vectored(&single).await.unwrap(), 4);
        let inner = io.into_inner();
        assert_eq!(inner.plain, vec![9, 4]);
        assert!(inner.vectored.is_empty());
        assert_eq!(inner.data, b"head bodyonly");
    }

    #[tokio::test]
    async fn large_vectors_stay_vectored() {
        let mut io = calls(usize::MAX);
        let big = vec![7u8; COALESCE_LIMIT];
        let bufs = [IoSlice::new(b"head"), IoSlice::new(&big)];
        assert_eq!(io.write_vectored(&bufs).await.unwrap(), COALESCE_LIMIT + 4);
        let inner = io.into_inner();
        assert!(inner.plain.is_empty());
        assert_eq!(inner.vectored, vec![COALESCE_LIMIT + 4]);
    }

    #[tokio::test]
    async fn a_short_write_reports_a_prefix_of_the_whole() {
        let mut io = calls(3);
        let bufs = [IoSlice::new(b"ab"), IoSlice::new(b"cd")];
        assert_eq!(io.write_vectored(&bufs).await.unwrap(), 3);
        assert_eq!(io.get_ref().data, b"abc");
    }

    /// Turns each plain write into a vector of two, as a TLS stream writes its records.
    #[pin_project::pin_project]
    struct Revector<I>(#[pin] I);

    impl<I: AsyncWrite> AsyncWrite for Revector<I> {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let (a, b) = buf.split_at(buf.len() / 2);
            self.project()
                .0
                .poll_write_vectored(cx, &[IoSlice::new(a), IoSlice::new(b)])
        }
        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.project().0.poll_flush(cx)
        }
        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.project().0.poll_shutdown(cx)
        }
    }

    #[tokio::test]
    async fn a_nested_stream_writes_while_the_outer_one_holds_the_buffer() {
        let mut io = Coalesced::new(Revector(calls(usize::MAX)));
        let bufs = [IoSlice::new(b"head "), IoSlice::new(b"body")];
        assert_eq!(io.write_vectored(&bufs).await.unwrap(), 9);
        let inner = io.into_inner().0.into_inner();
        assert_eq!(inner.data, b"head body");
        assert_eq!(
            inner.vectored,
            vec![9],
            "the nested stream passed the vector on"
        );
    }

    #[tokio::test]
    async fn a_stream_without_vectored_writes_is_left_to_its_writer() {
        let plain = Coalesced::new(Calls {
            plain_only: true,
            ..Calls::default()
        });
        assert!(!plain.is_write_vectored());
        assert!(calls(1).is_write_vectored());
    }

    #[tokio::test]
    async fn bytes_arrive_intact_through_a_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut io = Coalesced::new(tokio::net::TcpStream::connect(addr).await.unwrap());
            let big = vec![b'z'; 10_000];
            let mut pieces: Vec<&[u8]> = vec![b"GET / HTTP/1.1\r\n", b"\r\n", &big];
            while !pieces.is_empty() {
                let bufs: Vec<IoSlice<'_>> = pieces.iter().map(|p| IoSlice::new(p)).collect();
                let mut n = io.write_vectored(&bufs).await.unwrap();
                while n > 0 {
                    let take = n.min(pieces[0].len());
                    pieces[0] = &pieces[0][take..];
                    n -= take;
                    if pieces[0].is_empty() {
                        pieces.remove(0);
                    }
                }
            }
            io.shutdown().await.unwrap();
        });
        let (mut server, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        client.await.unwrap();
        assert_eq!(got.len(), 18 + 10_000);
        assert!(got.starts_with(b"GET / HTTP/1.1\r\n\r\nzzz"));
    }
}
