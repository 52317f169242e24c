//! A request's future under an optional response timeout.

use crate::errors::ResponseTimeout;
use conduit_error::Error;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// `F`, failing with [`ResponseTimeout`] once `timeout` has passed without its output.
///
/// Unlike `tokio::time::Timeout`, the timer is optional, so a request without a timeout
/// carries none, and the error is the one the proxy answers with (504).
#[pin_project::pin_project]
#[derive(Debug)]
pub struct Deadline<F> {
    #[pin]
    inner: F,
    #[pin]
    sleep: Option<Sleep>,
    timeout: Duration,
}

impl<F> Deadline<F> {
    /// `inner` under `timeout`, which starts now; no timeout when `None`.
    pub fn new(inner: F, timeout: Option<Duration>) -> Self {
        Self {
            inner,
            sleep: timeout.map(tokio::time::sleep),
            timeout: timeout.unwrap_or_default(),
        }
    }
}

impl<F, T> Future for Deadline<F>
where
    F: Future<Output = Result<T, Error>>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.inner.poll(cx) {
            return Poll::Ready(output);
        }
        match this.sleep.as_pin_mut().map(|sleep| sleep.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Err(ResponseTimeout(*this.timeout).into())),
            _ => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fails_with_a_response_timeout_once_the_timeout_passes() {
        let never = std::future::pending::<Result<(), Error>>();
        let error = Deadline::new(never, Some(Duration::from_secs(3)))
            .await
            .unwrap_err();
        let timeout = error.downcast_ref::<ResponseTimeout>().expect("a timeout");
        assert_eq!(timeout.0, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn the_output_wins_over_a_timeout_that_has_not_passed() {
        let later = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok::<_, Error>(7)
        };
        let output = Deadline::new(later, Some(Duration::from_secs(3))).await;
        assert_eq!(output.unwrap(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_timeout_it_waits_as_long_as_it_takes() {
        let late = async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, Error>(())
        };
        assert!(Deadline::new(late, None).await.is_ok());
    }
}
