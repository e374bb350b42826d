//! Logs as an event stream on stdout: text or JSON, filtered by level.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use super::settings::{LogFormat, Settings};

/// Installs the global subscriber. Fields of the reconcile span (kind,
/// namespace, name) are on every line logged inside it.
pub fn init(settings: &Settings) {
    let filter = EnvFilter::try_new(&settings.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    match settings.log_format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .init(),
        LogFormat::Text => registry.with(fmt::layer().with_target(false)).init(),
    }
}
