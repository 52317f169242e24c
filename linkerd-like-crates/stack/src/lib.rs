//! Building blocks for per-target stacks.
//!
//! A proxy builds one service per *target*: per original destination, per authority, per
//! endpoint. Tower's `Service` handles one request at a time; [`NewService`] is the factory
//! one level up: given a target, it builds the service for it. Targets describe themselves
//! through [`Param`]: a layer that needs a connect timeout asks for `Param<ConnectTimeout>` and
//! never learns the concrete target type, so the same layer serves inbound and outbound.
//!
//! [`NewCache`] keeps the service built for each target and hands out clones, dropping
//! entries that were not used for an idle timeout, so a long-lived proxy that sees many
//! short-lived destinations does not grow without bound. [`drain`] coordinates graceful
//! shutdown between the process and every task that must finish first. [`Backoff`] spaces
//! the retries of anything that reconnects or re-asks (discovery streams, certificates).

#![forbid(unsafe_code)]

mod backoff;
mod cache;
pub mod drain;

pub use self::backoff::Backoff;
pub use self::cache::NewCache;

/// Builds a service for a target.
pub trait NewService<T> {
    /// The service built.
    type Service;

    /// Builds the service for `target`.
    fn new_service(&self, target: T) -> Self::Service;
}

/// A value a target can provide to the layers that need it.
pub trait Param<P> {
    /// Returns the value.
    fn param(&self) -> P;
}

/// Extracts a value of type `P` from a target of type `T`; the counterpart of [`Param`]
/// where the value comes from the extractor's own state, not the target alone.
pub trait ExtractParam<P, T> {
    /// Extracts the value for `target`.
    fn extract_param(&self, target: &T) -> P;
}

impl<T: Param<P>, P> ExtractParam<P, T> for () {
    fn extract_param(&self, target: &T) -> P {
        target.param()
    }
}

/// A [`NewService`] made from a closure.
#[derive(Clone, Debug)]
pub struct NewFn<F>(F);

impl<F> NewFn<F> {
    /// Wraps `f`.
    pub fn new(f: F) -> Self {
        Self(f)
    }
}

impl<T, S, F: Fn(T) -> S> NewService<T> for NewFn<F> {
    type Service = S;
    fn new_service(&self, target: T) -> S {
        (self.0)(target)
    }
}

impl<T, N: NewService<T>> NewService<T> for std::sync::Arc<N> {
    type Service = N::Service;
    fn new_service(&self, target: T) -> N::Service {
        (**self).new_service(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone)]
    struct Target {
        port: u16,
    }

    #[derive(Debug, PartialEq)]
    struct Port(u16);

    impl Param<Port> for Target {
        fn param(&self) -> Port {
            Port(self.port)
        }
    }

    #[test]
    fn unit_extracts_through_param() {
        let port: Port = ().extract_param(&Target { port: 80 });
        assert_eq!(port, Port(80));
    }

    #[test]
    fn new_fn_builds_per_target() {
        let new = NewFn::new(|t: Target| t.port * 2);
        assert_eq!(new.new_service(Target { port: 21 }), 42);
    }
}
