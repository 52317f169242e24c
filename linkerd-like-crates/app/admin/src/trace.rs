//! Logging: a `tracing` subscriber whose filter the admin server can replace at run time.

use crate::LogLevel;
use std::sync::{Arc, Mutex, PoisonError};
use tracing_subscriber::{
    layer::SubscriberExt, reload, util::SubscriberInitExt, EnvFilter, Registry,
};

/// Installs the process-wide subscriber with `filter`, which came from `source` (the
/// variable or flag named in the error when it is invalid); fails also if a subscriber is
/// already installed.
pub fn init(filter: &str, source: &str) -> Result<Arc<dyn LogLevel>, String> {
    let parsed =
        EnvFilter::try_new(filter).map_err(|e| format!("{source}={filter:?} is invalid: {e}"))?;
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

struct Reloadable {
    handle: reload::Handle<EnvFilter, Registry>,
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
        let parsed = EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
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
