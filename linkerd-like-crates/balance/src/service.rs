use crate::ewma::{InFlight, PeakEwma};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// The boxed error of [`Balance`]: an inner service's error or [`NoEndpoints`].
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A [`Balance`] with no endpoints was asked for a request.
#[derive(Clone, Copy, Debug, Default, thiserror::Error)]
#[error("no endpoints to balance over")]
pub struct NoEndpoints;

/// P2C over peak-EWMA as a Tower service over owned endpoint services.
///
/// `poll_ready` picks an endpoint by P2C and drives it ready; if it is not ready, the ready
/// endpoint with the lowest load is taken instead. An endpoint whose `poll_ready` fails is
/// removed. With no endpoints, `poll_ready` fails with [`NoEndpoints`].
#[derive(Debug)]
pub struct Balance<K, S> {
    endpoints: Vec<Endpoint<K, S>>,
    ready: Option<usize>,
    initial_rtt: Duration,
    decay: Duration,
}

#[derive(Debug)]
struct Endpoint<K, S> {
    key: K,
    service: S,
    weight: f64,
    ewma: Arc<PeakEwma>,
}

impl<K: PartialEq, S> Balance<K, S> {
    /// No endpoints yet; estimates start at `initial_rtt` and decay over `decay`.
    pub fn new(initial_rtt: Duration, decay: Duration) -> Self {
        Self {
            endpoints: Vec::new(),
            ready: None,
            initial_rtt,
            decay,
        }
    }

    /// Adds (or replaces) the endpoint `key`.
    pub fn insert(&mut self, key: K, weight: u32, service: S) {
        self.remove(&key);
        self.endpoints.push(Endpoint {
            key,
            service,
            weight: f64::from(weight.max(1)),
            ewma: PeakEwma::new(self.initial_rtt, self.decay),
        });
    }

    /// Removes the endpoint `key`; requests already sent to it are unaffected.
    pub fn remove(&mut self, key: &K) -> Option<S> {
        let i = self.endpoints.iter().position(|e| e.key == *key)?;
        self.ready = None;
        Some(self.endpoints.swap_remove(i).service)
    }

    /// The number of endpoints.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// True with no endpoints.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    fn load(&self, i: usize) -> f64 {
        let e = &self.endpoints[i];
        e.ewma.load() / e.weight
    }
}

impl<K, S, Req> tower_service::Service<Req> for Balance<K, S>
where
    K: PartialEq,
    S: tower_service::Service<Req>,
    S::Error: Into<Error>,
{
    type Response = S::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            if self.endpoints.is_empty() {
                return Poll::Ready(Err(NoEndpoints.into()));
            }
            let first = match self.ready {
                Some(i) if i < self.endpoints.len() => i,
                _ => match crate::p2c(self.endpoints.len(), |i| self.load(i)) {
                    Some(i) => i,
                    None => continue,
                },
            };
            // The choice first, then the others from the least loaded.
            let mut order: Vec<usize> = (0..self.endpoints.len()).filter(|i| *i != first).collect();
            order.sort_by(|a, b| self.load(*a).total_cmp(&self.load(*b)));
            order.insert(0, first);
            let mut failed = None;
            for i in order {
                match self.endpoints[i].service.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        self.ready = Some(i);
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Ready(Err(_)) => {
                        failed = Some(i);
                        break;
                    }
                    Poll::Pending => {}
                }
            }
            match failed {
                Some(i) => {
                    self.endpoints.swap_remove(i);
                    self.ready = None;
                }
                None => {
                    self.ready = None;
                    return Poll::Pending;
                }
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let i = match self.ready.take() {
            Some(i) if i < self.endpoints.len() => i,
            _ => {
                return ResponseFuture {
                    state: State::Failed(Some(NoEndpoints.into())),
                }
            }
        };
        let endpoint = &mut self.endpoints[i];
        let in_flight = endpoint.ewma.start();
        ResponseFuture {
            state: State::Called {
                inner: endpoint.service.call(req),
                in_flight: Some(in_flight),
            },
        }
    }
}

/// The response future of [`Balance`]: records the latency when the response comes.
#[pin_project::pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    state: State<F>,
}

#[pin_project::pin_project(project = StateProj)]
#[derive(Debug)]
enum State<F> {
    Called {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
    },
    Failed(Option<Error>),
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<Error>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { inner, in_flight } => {
                let out = std::task::ready!(inner.poll(cx));
                if let Some(mut f) = in_flight.take() {
                    f.observe();
                }
                Poll::Ready(out.map_err(Into::into))
            }
            StateProj::Failed(e) => {
                Poll::Ready(Err(e.take().unwrap_or_else(|| NoEndpoints.into())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tower_service::Service;
    use tower_test::mock;

    type Mock = mock::Mock<&'static str, &'static str>;
    type Handle = mock::Handle<&'static str, &'static str>;

    fn balance() -> Balance<&'static str, Mock> {
        Balance::new(Duration::from_millis(1), Duration::from_secs(10))
    }

    /// Sends `n` requests one after another; endpoint `slow` answers after `delay`, the others
    /// at once. Returns how many each endpoint got.
    async fn run(
        b: &mut Balance<&'static str, Mock>,
        handles: &mut HashMap<&'static str, Handle>,
        slow: &'static str,
        delay: Duration,
        n: usize,
    ) -> HashMap<&'static str, usize> {
        let mut counts = HashMap::new();
        for _ in 0..n {
            for h in handles.values_mut() {
                h.allow(1);
            }
            std::future::poll_fn(|cx| b.poll_ready(cx)).await.unwrap();
            let fut = b.call("req");
            let mut served = None;
            for (name, h) in handles.iter_mut() {
                if let Some(Some((_, send))) = futures_now(h.next_request()) {
                    served = Some((*name, send));
                }
            }
            let (name, send) = served.expect("one endpoint got the request");
            *counts.entry(name).or_default() += 1;
            if name == slow {
                tokio::time::advance(delay).await;
            }
            send.send_response("ok");
            fut.await.unwrap();
            for h in handles.values_mut() {
                h.allow(0);
            }
        }
        counts
    }

    /// Polls a future once.
    fn futures_now<F: Future>(f: F) -> Option<F::Output> {
        let mut f = std::pin::pin!(f);
        let waker = std::task::Waker::noop();
        match f.as_mut().poll(&mut Context::from_waker(waker)) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_endpoint_gets_less_and_a_removed_one_none() {
        let mut b = balance();
        let mut handles = HashMap::new();
        for name in ["a", "b", "c"] {
            let (svc, h) = mock::pair();
            b.insert(name, 1, svc);
            handles.insert(name, h);
        }
        let counts = run(&mut b, &mut handles, "a", Duration::from_millis(50), 600).await;
        let slow = counts.get("a").copied().unwrap_or(0);
        assert!(slow < 60, "the slow endpoint got {slow} of 600: {counts:?}");
        assert!(counts["b"] > 200 && counts["c"] > 200, "{counts:?}");

        b.remove(&"b");
        handles.remove("b");
        let counts = run(&mut b, &mut handles, "a", Duration::from_millis(50), 100).await;
        assert!(!counts.contains_key("b"), "{counts:?}");
        assert_eq!(counts.values().sum::<usize>(), 100);
    }

    #[tokio::test]
    async fn no_endpoints_fails_fast() {
        let mut b = balance();
        let err = std::future::poll_fn(|cx| b.poll_ready(cx))
            .await
            .unwrap_err();
        assert!(err.is::<NoEndpoints>());
    }
}
