//! The controller's own metrics.

use conduit_control_destination::Index;
use std::fmt::Write;
use std::sync::Arc;

/// Gauges of the index's size and readers.
#[derive(Debug)]
pub(crate) struct ControllerMetrics {
    index: Arc<Index>,
}

impl ControllerMetrics {
    pub(crate) fn new(index: Arc<Index>) -> Self {
        Self { index }
    }
}

impl conduit_app_admin::Metrics for ControllerMetrics {
    fn encode(&self) -> String {
        let stats = self.index.stats();
        let mut out = String::new();
        for (name, help, value) in [
            (
                "destination_services",
                "Services in the index.",
                stats.services,
            ),
            (
                "destination_endpoints",
                "Endpoints over every service port in the index.",
                stats.endpoints,
            ),
            (
                "destination_endpoint_watches",
                "Names whose endpoints at least one stream reads.",
                stats.endpoint_watches,
            ),
            (
                "destination_profile_watches",
                "Names whose profile at least one stream reads.",
                stats.profile_watches,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}
