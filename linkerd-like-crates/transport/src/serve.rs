use crate::{Accepted, ConnectionLimit, Listener};
use conduit_stack::drain;
use std::future::Future;
use std::time::Duration;

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
                let conn = serve(accepted, drain.clone());
                tokio::spawn(async move {
                    conn.await;
                    drop(permit);
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
