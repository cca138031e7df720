//! Logging set-up shared by all services.

use tracing_subscriber::EnvFilter;

/// Log format, chosen per deployment: JSON for clusters (one event a line, machine-parsed),
/// text for a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global `tracing` subscriber. `RUST_LOG` overrides the default `info` filter.
/// Calling it twice is harmless (the second call leaves the first subscriber in place).
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
