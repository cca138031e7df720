//! revenue-calculator: tumbling-window GMV, order count and average order value, total and per category.

use clap::Parser;
use trendstream_service::config::{CommonOptions, ServiceConfig, load_config};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "revenue-calculator: tumbling-window GMV, order count and average order value, total and per category."
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
    /// Tumbling window size in seconds.
    #[arg(long, env = "REVENUE_WINDOW_SECONDS", default_value_t = 60)]
    window_seconds: u64,
}

impl ServiceConfig for Config {
    fn common(&self) -> &CommonOptions {
        &self.common
    }
}

fn main() {
    let config: Config = load_config("revenue-calculator");
    if !config.common.check_config {
        tracing::warn!("processing is not implemented yet; exiting");
    }
}
