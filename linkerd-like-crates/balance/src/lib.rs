//! Request-level load balancing: power of two choices (P2C) over peak-EWMA latency.
//!
//! For each request, two endpoints are drawn at random and the one with the lower *load* gets
//! it (Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing", 2001: two random
//! choices are exponentially better than one, and nearly as good as looking at all, at a
//! fixed cost). An endpoint's load is its latency estimate times its requests in flight plus
//! one, divided by its weight. The estimate is a *peak* EWMA (Finagle's, also linkerd2-proxy's
//! and tower's): a response slower than the estimate replaces it at once, a faster one pulls it
//! down gradually, and with no responses it decays toward zero, so a slow endpoint is avoided
//! quickly and probed again once it has been left alone for a while.
//!
//! - [`Pool`]: endpoints shared by many callers (a proxy's connections to one service): pick,
//!   use, report the response through the [`Picked`] handle. Endpoints are added and removed
//!   live; requests in flight to a removed endpoint finish normally.
//! - [`Balance`]: the same algorithm as a Tower service over owned inner services.
//!
//! Why our own rather than `tower::balance`: tower's P2C is a `Service` that owns its
//! endpoints behind `&mut self` and a `Discover` stream, so sharing it between connections
//! needs a `Buffer` (a channel hop and a task per request); the proxy's endpoints are shared
//! clients, so the shared [`Pool`] picks with a read lock and a few atomics, per request, with
//! no allocation. [`Balance`] exists for users who want a Tower service.

#![forbid(unsafe_code)]

mod ewma;
mod pool;
mod service;

pub use self::ewma::{InFlight, PeakEwma};
pub use self::pool::{Picked, Pool};
pub use self::service::{Balance, NoEndpoints, ResponseFuture};

/// Chooses one of `len` endpoints by P2C: two distinct random ones, the lower load wins.
pub fn p2c(len: usize, mut load: impl FnMut(usize) -> f64) -> Option<usize> {
    match len {
        0 => None,
        1 => Some(0),
        _ => {
            let a = fastrand::usize(..len);
            let mut b = fastrand::usize(..len - 1);
            if b >= a {
                b += 1;
            }
            Some(if load(b) < load(a) { b } else { a })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p2c_never_picks_the_worst_of_several() {
        let loads = [5.0, 1.0, 3.0, 9.0];
        for _ in 0..1000 {
            let i = p2c(loads.len(), |i| loads[i]).unwrap();
            assert_ne!(i, 3, "the worst loses every pair it is in");
        }
        assert_eq!(p2c(0, |_| 0.0), None);
        assert_eq!(p2c(1, |_| 0.0), Some(0));
    }
}
