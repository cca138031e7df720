//! session-aggregator: per-user session windows over the clickstream, session summaries and
//! live user features (see the library docs for the semantics).

use session_aggregator::processor::SERVICE;
use session_aggregator::{Config, SessionAggregator};
use std::process::ExitCode;
use trendstream_service::config::load_config;

fn main() -> ExitCode {
    let config: Config = load_config(SERVICE);
    if let Err(err) = config.validate_session() {
        eprintln!("{SERVICE}: {err}");
        return ExitCode::from(2);
    }
    if !config.runtime.allowed_lateness.is_zero() {
        tracing::warn!(
            allowed_lateness = ?config.runtime.allowed_lateness,
            "ALLOWED_LATENESS is ignored: sessions have no allowed lateness (a click for a closed session goes to the late topic)"
        );
    }
    let processor = SessionAggregator::new(config.session_gap_ms(), config.key_space());
    trendstream_runtime::run_service(
        config.common.check_config,
        config.runtime,
        config.common.http_addr,
        processor,
    )
}
