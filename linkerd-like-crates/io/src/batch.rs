use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// [`Batched`] writes through at once when this much is waiting.
pub const BATCH_LIMIT: usize = 64 * 1024;

/// A buffer up to this size is kept between batches; a larger one is freed.
const KEPT_CAPACITY: usize = 16 * 1024;

/// An I/O stream for an HTTP/2 connection's driver, whose writes during one poll of its task
/// leave in one system call.
///
/// The `h2` crate writes a DATA frame of 256 bytes or more straight from its payload, and
/// must finish that write before it encodes the next frame: one `send` per response body
/// chunk, where a connection's poll that answers twenty streams could have made one (in a
/// profile at 4 connections x 32 streams, 51k `send`s for 50k responses, against haproxy's
/// 11k). Here writes are copied into a buffer and accepted at once. A flush does not write:
/// it wakes the task, so the task is polled again right after it yields, and the buffer is
/// written on that poll's first read. A driver that reads on every poll, as `h2`'s connection
/// does (it reads until the socket would block before anything else), so writes what one
/// poll queued in one call, one scheduler turn later. The buffer is also written when it
/// reaches [`BATCH_LIMIT`] (a write waits while it cannot be), and before a shutdown.
#[derive(Debug)]
pub struct Batched<I> {
    io: I,
    buf: Vec<u8>,
    /// How much of `buf` has been written.
    written: usize,
    /// The socket would not take the rest of `buf`: its readiness will wake the task.
    blocked: bool,
}

impl<I> Batched<I> {
    /// Wraps `io`.
    pub fn new(io: I) -> Self {
        Self {
            io,
            buf: Vec::new(),
            written: 0,
            blocked: false,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &I {
        &self.io
    }
}

impl<I: AsyncWrite + Unpin> Batched<I> {
    /// Writes the buffer out, then flushes the stream (a TLS stream holds records until then).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let written = Pin::new(&mut self.io).poll_write(cx, &self.buf[self.written..]);
            self.blocked = written.is_pending();
            let n = ready!(written)?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.written = 0;
        if self.buf.capacity() > KEPT_CAPACITY {
            // A burst's buffer is not kept by a connection that may now sit idle.
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Accepts `len` more bytes, copied by `copy`, writing the buffer first if they would
    /// take it past the limit.
    fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
        len: usize,
        copy: impl FnOnce(&mut Vec<u8>),
    ) -> Poll<io::Result<usize>> {
        if self.buf.len() + len > BATCH_LIMIT {
            ready!(self.poll_drain(cx))?;
        }
        if self.buf.is_empty() {
            // Sized once for a typical poll's worth, rather than grown frame by frame.
            self.buf.reserve(len.max(KEPT_CAPACITY));
        }
        copy(&mut self.buf);
        Poll::Ready(Ok(len))
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for Batched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.buf.is_empty() {
            // Not done yet means the socket is full; its readiness will wake the task.
            if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Batched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Larger than a batch: nothing to gather it with.
        if self.buf.is_empty() && data.len() >= BATCH_LIMIT {
            return Pin::new(&mut self.io).poll_write(cx, data);
        }
        self.poll_accept(cx, data.len(), |buf| buf.extend_from_slice(data))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum::<usize>();
        if self.buf.is_empty() && len >= BATCH_LIMIT {
            return Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        }
        self.poll_accept(cx, len, |buf| {
            for b in bufs {
                buf.extend_from_slice(b);
            }
        })
    }

    fn is_write_vectored(&self) -> bool {
        // Vectors are copied into the batch as cheaply as slices.
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.buf.is_empty() {
            return Pin::new(&mut self.io).poll_flush(cx);
        }
        // Written on the next poll's first read, once everything this poll queues is in. A
        // socket that is full wakes the task itself when it can take more; waking it here
        // too would only spin.
        if !self.blocked {
            cx.waker().wake_by_ref();
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct CountWakes(AtomicUsize);

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A stream that records each write call and reads nothing.
    #[derive(Default)]
    struct Calls {
        writes: Vec<usize>,
        data: Vec<u8>,
        flushes: usize,
        /// Writes are refused (pending) while set.
        full: bool,
    }

    impl AsyncWrite for Calls {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.full {
                return Poll::Pending;
            }
            self.writes.push(buf.len());
            self.data.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncRead for Calls {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    #[test]
    fn a_polls_writes_leave_together_on_its_next_read() {
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut io = Batched::new(Calls::default());
        let mut pinned = Pin::new(&mut io);
        for frame in [&b"head"[..], b"body-one", b"body-two"] {
            let slices = [io::IoSlice::new(b"|"), io::IoSlice::new(frame)];
            let n = pinned.as_mut().poll_write_vectored(&mut cx, &slices);
            assert!(matches!(n, Poll::Ready(Ok(n)) if n == frame.len() + 1));
            assert!(pinned.as_mut().poll_flush(&mut cx).is_ready());
        }
        assert!(pinned.get_ref().writes.is_empty(), "nothing written yet");
        assert!(
            wakes.0.load(Ordering::SeqCst) > 0,
            "the task is polled again"
        );
        let mut scratch = [0u8; 8];
        let mut read = ReadBuf::new(&mut scratch);
        assert!(pinned.as_mut().poll_read(&mut cx, &mut read).is_pending());
        assert_eq!(pinned.get_ref().writes, vec![23], "one write for the poll");
        assert_eq!(pinned.get_ref().data, b"|head|body-one|body-two");
    }

    #[test]
    fn a_full_batch_waits_for_the_socket() {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut io = Batched::new(Calls {
            full: true,
            ..Calls::default()
        });
        let mut pinned = Pin::new(&mut io);
        let chunk = vec![7u8; 1000];
        let mut accepted = 0;
        while let Poll::Ready(Ok(n)) = pinned.as_mut().poll_write(&mut cx, &chunk) {
            accepted += n;
            assert!(accepted <= BATCH_LIMIT, "the batch grew past its limit");
        }
        assert!(accepted > BATCH_LIMIT - chunk.len());
        // Writable again: the waiting write goes through once the batch is out.
        pinned.as_mut().get_mut().io.full = false;
        assert!(pinned.as_mut().poll_write(&mut cx, &chunk).is_ready());
        assert_eq!(pinned.get_ref().writes, vec![accepted]);
        assert!(pinned.as_mut().poll_shutdown(&mut cx).is_ready());
        assert_eq!(pinned.get_ref().data.len(), accepted + chunk.len());
    }

    #[test]
    fn a_full_socket_is_left_to_wake_the_task() {
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut io = Batched::new(Calls {
            full: true,
            ..Calls::default()
        });
        let mut pinned = Pin::new(&mut io);
        assert!(pinned.as_mut().poll_write(&mut cx, b"frame").is_ready());
        assert!(pinned.as_mut().poll_flush(&mut cx).is_ready());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        let mut scratch = [0u8; 8];
        let mut read = ReadBuf::new(&mut scratch);
        // The next poll finds the socket full: flushing again must not wake the task, or it
        // would be polled in a loop until the peer reads.
        assert!(pinned.as_mut().poll_read(&mut cx, &mut read).is_pending());
        assert!(pinned.as_mut().poll_flush(&mut cx).is_ready());
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "woken while the socket is full"
        );
        pinned.as_mut().get_mut().io.full = false;
        assert!(pinned.as_mut().poll_read(&mut cx, &mut read).is_pending());
        assert_eq!(pinned.get_ref().data, b"frame");
        // Writable again, a new batch wakes the task as before.
        assert!(pinned.as_mut().poll_write(&mut cx, b"next").is_ready());
        assert!(pinned.as_mut().poll_flush(&mut cx).is_ready());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn bytes_arrive_whole_and_in_order_over_a_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut io = Batched::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let mut sent = Vec::new();
        for i in 0..2000u32 {
            // Sizes from 1 byte to past the limit, so every path is taken.
            let chunk = vec![(i % 251) as u8; ((i as usize * 97) % (BATCH_LIMIT + 500)) + 1];
            io.write_all(&chunk).await.unwrap();
            io.flush().await.unwrap();
            sent.extend_from_slice(&chunk);
        }
        io.shutdown().await.unwrap();
        let got = reader.await.unwrap();
        assert_eq!(got.len(), sent.len());
        assert!(got == sent);
    }
}
