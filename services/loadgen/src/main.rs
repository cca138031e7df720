//! loadgen: seeded, rate-limited e-commerce traffic (clickstream and orders) for Kafka and PostgreSQL.

use clap::Parser;
use trendstream_service::config::{CommonOptions, ServiceConfig, load_config};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "loadgen: seeded, rate-limited e-commerce traffic (clickstream and orders) for Kafka and PostgreSQL."
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
    /// Events per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seed of the generator; the same seed gives the same events.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

impl ServiceConfig for Config {
    fn common(&self) -> &CommonOptions {
        &self.common
    }
}

fn main() {
    let config: Config = load_config("loadgen");
    if !config.common.check_config {
        tracing::warn!("processing is not implemented yet; exiting");
    }
}
