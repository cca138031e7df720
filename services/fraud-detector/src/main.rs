//! fraud-detector: per-user complex event processing over orders, in event time.

use clap::Parser;
use trendstream_service::config::{CommonOptions, ServiceConfig, load_config};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "fraud-detector: per-user complex event processing over orders, in event time."
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
    /// Path of a YAML or JSON rule file; the built-in rules apply when absent.
    #[arg(long, env = "FRAUD_RULES_FILE")]
    rules_file: Option<std::path::PathBuf>,
}

impl ServiceConfig for Config {
    fn common(&self) -> &CommonOptions {
        &self.common
    }
}

fn main() {
    let config: Config = load_config("fraud-detector");
    if !config.common.check_config {
        tracing::warn!("processing is not implemented yet; exiting");
    }
}
