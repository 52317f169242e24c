use crate::{Accepted, ConnectionLimit, Listener};
use conduit_stack::drain;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;

/// Accepts connections from `listener` and hands each to `serve` on its own task, at most
/// `max_connections` at a time, until `drain` is signaled.
pub async fn serve<F, Fut>(
    listener: Listener,
    max_connections: usize,
    mut drain: drain::Watch,
    serve: F,
) where
    F: Fn(Accepted, drain::Watch) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limit = ConnectionLimit::new(max_connections);
    loop {
        let permit = tokio::select! {
            p = limit.acquire() => p,
            _ = drain.signaled() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = drain.signaled() => break,
        };
        match accepted {
            Ok(accepted) => {
                tokio::spawn(Holding {
                    conn: serve(accepted, drain.clone()),
                    _permit: permit,
                });
            }
            Err(error) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tracing::debug!(addr = %listener.local_addr(), "stopped accepting");
}

/// A connection's future, holding its place under the connection limit until it ends.
///
/// Why not `async move { conn.await; drop(permit) }`: an async block keeps the future it
/// captured and the one it awaits in separate fields, so each connection's task would take
/// twice its future's size (5.5 KB instead of 2.8 KB for an inbound connection).
#[pin_project::pin_project]
struct Holding<F> {
    #[pin]
    conn: F,
    _permit: OwnedSemaphorePermit,
}

impl<F: Future> Future for Holding<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().conn.poll(cx)
    }
}
