use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Receives byte counts from a [`CountingIo`].
pub trait Count {
    /// `n` bytes were read.
    fn read(&self, n: usize);
    /// `n` bytes were written.
    fn wrote(&self, n: usize);
}

impl<C: Count + ?Sized> Count for std::sync::Arc<C> {
    fn read(&self, n: usize) {
        (**self).read(n)
    }
    fn wrote(&self, n: usize) {
        (**self).wrote(n)
    }
}

/// An I/O stream that reports the bytes moved through it.
#[pin_project::pin_project]
#[derive(Debug)]
pub struct CountingIo<I, C> {
    #[pin]
    io: I,
    count: C,
}

impl<I, C> CountingIo<I, C> {
    /// Counts the bytes moved through `io` into `count`.
    pub fn new(io: I, count: C) -> Self {
        Self { io, count }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &I {
        &self.io
    }
}

impl<I: AsyncRead, C: Count> AsyncRead for CountingIo<I, C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = this.io.poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.count.read(n);
        }
        res
    }
}

impl<I: AsyncWrite, C: Count> AsyncWrite for CountingIo<I, C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = this.io.poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            this.count.wrote(n);
        }
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = this.io.poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = res {
            this.count.wrote(n);
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[derive(Default)]
    struct Counter {
        read: AtomicUsize,
        wrote: AtomicUsize,
    }

    impl Count for Counter {
        fn read(&self, n: usize) {
            self.read.fetch_add(n, Ordering::Relaxed);
        }
        fn wrote(&self, n: usize) {
            self.wrote.fetch_add(n, Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn counts_both_directions() {
        let (mut peer, io) = tokio::io::duplex(64);
        let counter = Arc::new(Counter::default());
        let mut io = CountingIo::new(io, counter.clone());
        io.write_all(b"12345").await.unwrap();
        peer.write_all(b"abc").await.unwrap();
        drop(peer);
        let mut got = Vec::new();
        io.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"abc");
        assert_eq!(counter.read.load(Ordering::Relaxed), 3);
        assert_eq!(counter.wrote.load(Ordering::Relaxed), 5);
    }
}
