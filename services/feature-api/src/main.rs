//! feature-api: REST over the Redis feature store, with a live dashboard.

use clap::Parser;
use trendstream_service::config::{CommonOptions, ServiceConfig, load_config};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "feature-api: REST over the Redis feature store, with a live dashboard."
)]
struct Config {
    #[command(flatten)]
    common: CommonOptions,
    /// Redis URL of the feature store.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
}

impl ServiceConfig for Config {
    fn common(&self) -> &CommonOptions {
        &self.common
    }
}

fn main() {
    let config: Config = load_config("feature-api");
    if !config.common.check_config {
        tracing::warn!("processing is not implemented yet; exiting");
    }
}
