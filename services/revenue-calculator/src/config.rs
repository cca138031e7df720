//! The binary's configuration: the common service options, the runtime's options and the
//! window settings, from flags or the environment the operator sets.

use clap::Parser;
use trendstream_events::Currency;
use trendstream_events::feature_store::{DEFAULT_PREFIX, parse_prefix};
use trendstream_runtime::RuntimeOptions;
use trendstream_service::config::{CommonOptions, ServiceConfig};
use trendstream_service::duration;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "revenue-calculator: GMV, orders and average order value per event-time window, total and per category."
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonOptions,
    #[command(flatten)]
    pub runtime: RuntimeOptions,
    /// Tumbling window size.
    #[arg(long, env = "WINDOW_SIZE", default_value = "1m", value_parser = |v: &str| duration::parse(v).map_err(|e| e.to_string()))]
    pub window_size: std::time::Duration,
    /// The one currency windows are reported in; orders in others are dead-lettered.
    #[arg(long, env = "REVENUE_CURRENCY", default_value = "TRY")]
    pub currency: Currency,
    /// Partitions of the input topic (the operator sets it); read from the broker when unset.
    #[arg(long, env = "KAFKA_PARTITIONS")]
    pub partitions: Option<usize>,
    /// Prefix of the Redis keys (the feature-store layout).
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = DEFAULT_PREFIX, value_parser = parse_prefix)]
    pub redis_key_prefix: String,
}

impl ServiceConfig for Config {
    fn common(&self) -> &CommonOptions {
        &self.common
    }
}
