//! fraud-detector: per-user complex event processing over orders and clickstream, in event time.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use fraud_detector::processor::FraudDetector;
use fraud_detector::rules::{Rule, Source, built_in_rules, parse_rules};
use trendstream_events::feature_store::{KeySpace, valid_id};
use trendstream_runtime::RuntimeOptions;
use trendstream_service::config::{CommonOptions, ServiceConfig, load_config};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "fraud-detector: per-user complex event processing over orders and clickstream, in event time."
)]
struct Config {
    #[command(flatten)]
    common: CommonOptions,
    #[command(flatten)]
    runtime: RuntimeOptions,
    /// Path of a YAML or JSON rule file; the built-in rules apply when absent.
    #[arg(long, env = "FRAUD_RULES_FILE")]
    rules_file: Option<PathBuf>,
    /// Input topics that carry ClickEvents, comma-separated; every other input topic carries
    /// OrderEvents.
    #[arg(
        long,
        env = "FRAUD_CLICK_TOPICS",
        value_delimiter = ',',
        default_value = "clickstream"
    )]
    click_topics: Vec<String>,
    /// Prefix of the Redis keys alerts are written under.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "ts")]
    redis_key_prefix: String,
}

impl ServiceConfig for Config {
    fn common(&self) -> &CommonOptions {
        &self.common
    }
}

#[derive(Debug, thiserror::Error)]
enum ConfigError {
    #[error(transparent)]
    Runtime(#[from] trendstream_runtime::config::ConfigError),
    #[error("invalid configuration: FRAUD_RULES_FILE: cannot read {path}: {source}")]
    RulesUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: FRAUD_RULES_FILE: {0}")]
    Rules(#[from] fraud_detector::rules::RuleError),
    #[error("invalid configuration: {field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
}

fn load_rules(path: Option<&Path>) -> Result<Vec<Rule>, ConfigError> {
    let Some(path) = path else {
        return Ok(built_in_rules());
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::RulesUnreadable {
        path: path.to_owned(),
        source,
    })?;
    Ok(parse_rules(&text, &path.display().to_string())?)
}

fn validate(config: &Config) -> Result<Vec<Rule>, ConfigError> {
    config.runtime.validate()?;
    if !valid_id(&config.redis_key_prefix) {
        return Err(ConfigError::Field {
            field: "REDIS_KEY_PREFIX",
            message: "1 to 128 characters of A-Z a-z 0-9 _ - . : @, the first a letter or digit"
                .into(),
        });
    }
    if config.click_topics.iter().any(|t| t.trim().is_empty()) {
        return Err(ConfigError::Field {
            field: "FRAUD_CLICK_TOPICS",
            message: "empty topic name".into(),
        });
    }
    let rules = load_rules(config.rules_file.as_deref())?;
    let inputs = &config.runtime.input_topics;
    let has_clicks = inputs.iter().any(|t| config.click_topics.contains(t));
    let has_orders = inputs.iter().any(|t| !config.click_topics.contains(t));
    for rule in &rules {
        if rule.reads(Source::Click) && !rule.reads(Source::Order) && !has_clicks {
            tracing::warn!(
                rule = rule.name,
                "rule reads click events but no input topic is in FRAUD_CLICK_TOPICS"
            );
        }
        if rule.reads(Source::Order) && !rule.reads(Source::Click) && !has_orders {
            tracing::warn!(
                rule = rule.name,
                "rule reads orders but every input topic is a click topic"
            );
        }
    }
    Ok(rules)
}

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
