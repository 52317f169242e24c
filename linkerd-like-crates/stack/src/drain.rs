//! Graceful shutdown: a [`Signal`] held by whoever decides to stop, and [`Watch`]es held by
//! every task that must be allowed to finish.
//!
//! [`Signal::drain`] tells every watch to wind down, then waits until all of them have been
//! dropped. Completion is tracked through an mpsc channel that is never sent on: when the
//! last [`Watch`] (each holding a sender) is dropped, the receiver sees the channel close.

use tokio::sync::{mpsc, watch};

/// Creates a signal and its first watch.
pub fn channel() -> (Signal, Watch) {
    let (signal_tx, signal_rx) = watch::channel(false);
    let (done_tx, done_rx) = mpsc::channel(1);
    let signal = Signal { signal_tx, done_rx };
    let watch = Watch {
        signal_rx,
        _done_tx: done_tx,
    };
    (signal, watch)
}

/// Starts a drain and waits for it to finish.
#[derive(Debug)]
pub struct Signal {
    signal_tx: watch::Sender<bool>,
    done_rx: mpsc::Receiver<std::convert::Infallible>,
}

/// Held by a task that must be allowed to finish before the process exits.
#[derive(Clone, Debug)]
pub struct Watch {
    signal_rx: watch::Receiver<bool>,
    _done_tx: mpsc::Sender<std::convert::Infallible>,
}

impl Signal {
    /// Tells every watch to wind down and waits until all have been dropped.
    pub async fn drain(mut self) {
        let _ = self.signal_tx.send(true);
        // Only closes once every sender (every Watch) is gone.
        let _ = self.done_rx.recv().await;
    }
}

impl Watch {
    /// Resolves once a drain has started.
    pub async fn signaled(&mut self) {
        // An error means the Signal is gone, which is also a reason to stop.
        let _ = self.signal_rx.wait_for(|draining| *draining).await;
    }

    /// True once a drain has started.
    pub fn is_draining(&self) -> bool {
        *self.signal_rx.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_every_watch() {
        let (signal, watch) = channel();
        let mut w1 = watch.clone();
        let mut w2 = watch;
        let t1 = tokio::spawn(async move {
            w1.signaled().await;
            drop(w1);
        });
        let t2 = tokio::spawn(async move {
            w2.signaled().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(w2);
        });
        let start = tokio::time::Instant::now();
        signal.drain().await;
        assert!(start.elapsed() >= Duration::from_secs(5));
        t1.await.unwrap();
        t2.await.unwrap();
    }

    #[tokio::test]
    async fn watch_reports_draining() {
        let (signal, watch) = channel();
        assert!(!watch.is_draining());
        let w = watch.clone();
        let drain = tokio::spawn(signal.drain());
        tokio::task::yield_now().await;
        let mut watch = watch;
        watch.signaled().await;
        assert!(w.is_draining());
        drop((w, watch));
        drain.await.unwrap();
    }
}
