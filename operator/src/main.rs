//! trendstream-operator: watches StreamJob resources and reconciles their processor fleets.

use clap::Parser;
use trendstream_runtime::service::{CommonOptions, ServiceConfig, load_config};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "TrendStream operator: reconciles StreamJob resources"
)]
struct Config {
    #[command(flatten)]
    common: CommonOptions,
    /// Namespace to watch; all namespaces when absent.
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
}

impl ServiceConfig for Config {
    fn common(&self) -> &CommonOptions {
        &self.common
    }
}

fn main() {
    let config: Config = load_config("trendstream-operator");
    if !config.common.check_config {
        tracing::warn!("reconciliation is not implemented yet; exiting");
    }
}
