//! session-aggregator: per-user session windows over the clickstream, session summaries and live user features.

use clap::Parser;
use trendstream_service::config::{CommonOptions, ServiceConfig, load_config};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "session-aggregator: per-user session windows over the clickstream, session summaries and live user features."
)]
struct Config {
    #[command(flatten)]
    common: CommonOptions,
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    kafka_bootstrap_servers: String,
    /// Inactivity gap that closes a session, in seconds.
    #[arg(long, env = "SESSION_GAP_SECONDS", default_value_t = 1800)]
    session_gap_seconds: u64,
}

impl ServiceConfig for Config {
    fn common(&self) -> &CommonOptions {
        &self.common
    }
}

fn main() {
    let config: Config = load_config("session-aggregator");
    if !config.common.check_config {
        tracing::warn!("processing is not implemented yet; exiting");
    }
}
