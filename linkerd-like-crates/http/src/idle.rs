//! Closing HTTP/1 connections that sit idle between requests.
//!
//! hyper's own header-read timeout makes a new timer for every request head: an allocation and
//! a timer-wheel insertion and removal per request, about 5% of the proxy's work per request
//! on a keep-alive connection. This does the same job with one timer per connection, checked
//! lazily. [`Activity`] counts the requests in flight (from the parsed head until the response
//! body has ended or been dropped) and stamps the time the last one ended. When the
//! connection's timer fires, it is re-armed for the timeout after that stamp, or for the
//! timeout from now while a request is in flight; a connection that has been idle for the
//! whole timeout is closed. So a client that leaves a keep-alive connection idle, or dribbles
//! its next head (slowloris), is cut off one timeout after its last response, as with hyper's
//! timer, while long requests and streaming responses are never cut.

use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// A connection's requests in flight, and when it last became idle.
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// When the connection last became idle, in nanoseconds after `start`.
    idle_since: AtomicU64,
}

impl Activity {
    /// A connection that is idle from now.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
        })
    }

    /// When the connection will have been idle for `timeout`, or `None` while a request is in
    /// flight.
    pub(crate) fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = Duration::from_nanos(self.idle_since.load(Ordering::Acquire));
        Some(self.start + since + timeout)
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }
}

/// Marks one request in flight until dropped.
#[derive(Debug)]
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.0;
        let nanos = u64::try_from(activity.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // Stamped before the count drops, so a reader that sees no request in flight sees
        // this request's end too.
        activity.idle_since.fetch_max(nanos, Ordering::AcqRel);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A service whose requests count as activity on their connection.
#[derive(Clone, Debug)]
pub(crate) struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S, Req, B> tower_service::Service<Req> for Tracked<S>
where
    S: tower_service::Service<Req, Response = http::Response<B>>,
{
    type Response = http::Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture {
            busy: Some(self.activity.begin()),
            inner: self.inner.call(req),
        }
    }
}

/// The response future of [`Tracked`]; the request stays in flight through the body.
#[pin_project::pin_project]
#[derive(Debug)]
pub(crate) struct ResponseFuture<F> {
    #[pin]
    inner: F,
    busy: Option<Busy>,
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let rsp = std::task::ready!(this.inner.poll(cx))?;
        let busy = this.busy.take();
        Poll::Ready(Ok(rsp.map(|inner| TrackedBody { inner, _busy: busy })))
    }
}

/// A response body that keeps its request in flight until it is dropped.
#[pin_project::pin_project]
#[derive(Debug)]
pub(crate) struct TrackedBody<B> {
    #[pin]
    inner: B,
    _busy: Option<Busy>,
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_service::Service;

    #[tokio::test(start_paused = true)]
    async fn a_request_is_in_flight_until_its_body_is_dropped() {
        let activity = Activity::new();
        let timeout = Duration::from_secs(10);
        let first = activity.idle_deadline(timeout).unwrap();
        assert_eq!(first, activity.start + timeout);

        let mut svc = Tracked::new(
            tower::service_fn(|()| async { Ok::<_, ()>(http::Response::new(String::from("x"))) }),
            activity.clone(),
        );
        let pending = svc.call(());
        assert_eq!(activity.idle_deadline(timeout), None, "busy from the call");
        tokio::time::advance(Duration::from_secs(3)).await;
        let rsp = pending.await.unwrap();
        assert_eq!(
            activity.idle_deadline(timeout),
            None,
            "busy while the body lives"
        );
        tokio::time::advance(Duration::from_secs(4)).await;
        drop(rsp);
        assert_eq!(
            activity.idle_deadline(timeout),
            Some(Instant::now() + timeout),
            "idle from the body's end"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_request_ends_too() {
        let activity = Activity::new();
        let mut svc = Tracked::new(
            tower::service_fn(|()| std::future::pending::<Result<http::Response<String>, ()>>()),
            activity.clone(),
        );
        let pending = svc.call(());
        assert_eq!(activity.idle_deadline(Duration::from_secs(1)), None);
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(pending);
        assert_eq!(
            activity.idle_deadline(Duration::from_secs(1)),
            Some(Instant::now() + Duration::from_secs(1))
        );
    }
}
