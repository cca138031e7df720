//! cdc-processor: Debezium change events and PostgreSQL logical replication to canonical order and inventory streams.

use clap::Parser;
use trendstream_service::config::{CommonOptions, ServiceConfig, load_config};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "cdc-processor: Debezium change events and PostgreSQL logical replication to canonical order and inventory streams."
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
    /// Topic prefix of the Debezium change topics (<prefix>.<schema>.<table>).
    #[arg(long, env = "CDC_TOPIC_PREFIX", default_value = "shop")]
    topic_prefix: String,
}

impl ServiceConfig for Config {
    fn common(&self) -> &CommonOptions {
        &self.common
    }
}

fn main() {
    let config: Config = load_config("cdc-processor");
    if !config.common.check_config {
        tracing::warn!("processing is not implemented yet; exiting");
    }
}
