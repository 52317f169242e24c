//! Logging: a `tracing` subscriber whose filter the admin server can replace at run time.

use crate::LogLevel;
use std::sync::{Arc, Mutex, PoisonError};
use tracing_subscriber::{
    filter::Targets, layer::SubscriberExt, reload, util::SubscriberInitExt, Registry,
};

/// Installs the process-wide subscriber with `filter`, which came from `source` (the
/// variable or flag named in the error when it is invalid); fails also if a subscriber is
/// already installed.
pub fn init(filter: &str, source: &str) -> Result<Arc<dyn LogLevel>, String> {
    let parsed = parse(filter).map_err(|e| format!("{source}={filter:?} is invalid: {e}"))?;
    let (layer, handle) = reload::Layer::new(parsed);
    tracing_subscriber::registry()
        .with(layer)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(Reloadable {
        handle,
        current: Mutex::new(filter.to_string()),
    }))
}

/// Filters are `Targets` (`level` or `target=level`, comma-separated), not `EnvFilter`:
/// `EnvFilter` compiles its directives with `regex` at start-up, which alone costs the idle
/// proxy a few hundred KiB of resident code and heap, and its span and field filters are
/// evaluated per event. Per-target levels are what operators set on a proxy.
fn parse(filter: &str) -> Result<Targets, String> {
    // `Targets` takes any bare word as a target to trace, so a typo such as `[[[` would be
    // accepted silently; targets are module paths, and anything else is refused here.
    let directives: Vec<&str> = filter.split(',').map(str::trim).collect();
    for directive in &directives {
        let target = directive.split('=').next().unwrap_or_default();
        if target.is_empty() {
            return Err(format!("empty target in {directive:?}"));
        }
        let bad = target
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-')));
        if let Some(c) = bad {
            return Err(format!(
                "{c:?} in target {target:?}: expected a module path"
            ));
        }
    }
    directives
        .join(",")
        .parse::<Targets>()
        .map_err(|e| e.to_string())
}

struct Reloadable {
    handle: reload::Handle<Targets, Registry>,
    current: Mutex<String>,
}

impl LogLevel for Reloadable {
    fn get(&self) -> String {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, filter: &str) -> Result<(), String> {
        let parsed = parse(filter)?;
        self.handle.reload(parsed).map_err(|e| e.to_string())?;
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = filter.to_string();
        Ok(())
    }
}

/// For a proxy or controller embedded in another program, which owns logging.
#[derive(Debug, Default)]
pub struct Unmanaged;

impl LogLevel for Unmanaged {
    fn get(&self) -> String {
        "unmanaged".to_string()
    }

    fn set(&self, _: &str) -> Result<(), String> {
        Err("logging is managed by the program embedding this one".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn accepts_levels_and_module_targets() {
        for ok in [
            "info",
            "warn,conduit=debug",
            "hyper::proto=trace, h2=off",
            "conduit_proxy",
        ] {
            assert!(parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_apply() {
        for bad in [
            "[[[",
            "conduit=loud",
            "a=b=c",
            "conduit[{id}]=debug",
            "x y",
            "info,",
            "=debug",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
