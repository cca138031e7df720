//! loadgen: seeded, rate-limited e-commerce traffic (clickstream and orders) for Kafka, with an
//! event file of exactly what was produced.

use std::process::ExitCode;

use loadgen::config::Config;
use trendstream_service::config::load_config;

fn main() -> ExitCode {
    let config: Config = load_config("loadgen");
    if let Err(err) = config.validate() {
        eprintln!("loadgen: invalid configuration: {err}");
        return ExitCode::from(2);
    }
    if config.common.check_config {
        println!("{config:#?}");
        return ExitCode::SUCCESS;
    }
    match loadgen::app::run(&config) {
        Ok(summary) => {
            print!("{summary}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "loadgen failed");
            eprintln!("loadgen: {err:#}");
            ExitCode::FAILURE
        }
    }
}
