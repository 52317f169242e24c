//! The one error type that crosses Conduit's stack boundaries.
//!
//! Each middleware crate has small typed errors of its own (made with `thiserror`). Where
//! stacks are joined, errors are erased into [`Error`], a boxed trait object, so that layers
//! compose without a generic error parameter everywhere. Callers that must react to a
//! particular failure (to pick an HTTP status, for instance) find it again by walking the
//! `source()` chain and downcasting with [`cause_ref`], never by matching on messages.

#![forbid(unsafe_code)]

/// A boxed, thread-safe error.
pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Finds the first error of type `E` in `error` or its chain of sources.
pub fn cause_ref<'a, E>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a E>
where
    E: std::error::Error + 'static,
{
    let mut next = Some(error);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        next = err.source();
    }
    None
}

/// True when `error` or any of its sources is of type `E`.
pub fn is_caused_by<E>(error: &(dyn std::error::Error + 'static)) -> bool
where
    E: std::error::Error + 'static,
{
    cause_ref::<E>(error).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("unrelated")]
    struct Unrelated;

    #[test]
    fn finds_a_cause_deep_in_the_chain() {
        let err: Error = Box::new(Outer(Inner));
        assert!(cause_ref::<Inner>(&*err).is_some());
        assert!(cause_ref::<Outer>(&*err).is_some());
        assert!(!is_caused_by::<Unrelated>(&*err));
    }

    #[test]
    fn finds_io_errors_by_kind() {
        let err: Error = Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let io = cause_ref::<std::io::Error>(&*err).map(|e| e.kind());
        assert_eq!(io, Some(std::io::ErrorKind::ConnectionRefused));
    }
}
