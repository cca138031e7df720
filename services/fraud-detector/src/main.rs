//! fraud-detector: per-user complex event processing over orders and clickstream, in event time.

use std::process::ExitCode;

use fraud_detector::config::{Config, validate};
use fraud_detector::processor::FraudDetector;
use trendstream_events::feature_store::KeySpace;
use trendstream_service::config::load_config;

fn main() -> ExitCode {
    let config: Config = load_config("fraud-detector");
    let rules = match validate(&config) {
        Ok(rules) => rules,
        Err(err) => {
            tracing::error!(error = %err, "invalid configuration");
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    tracing::info!(rules = ?names, "rules loaded");
    if config.common.check_config {
        println!("rules: {}", names.join(", "));
    }
    let processor = FraudDetector::new(
        rules,
        config.click_topics.clone(),
        KeySpace::new(config.redis_key_prefix.clone()),
    );
    trendstream_runtime::run_service(
        config.common.check_config,
        config.runtime,
        config.common.http_addr,
        processor,
    )
}
