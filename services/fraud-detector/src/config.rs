//! The binary's configuration: the common service options, the runtime's options and the
//! rule settings, from flags or the environment the operator sets; [`validate`] loads the rules.

use std::path::{Path, PathBuf};

use crate::rules::{Rule, Source, built_in_rules, parse_rules};
use clap::Parser;
use trendstream_events::feature_store::{DEFAULT_PREFIX, parse_prefix};
use trendstream_runtime::RuntimeOptions;
use trendstream_service::config::{CommonOptions, ServiceConfig};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "fraud-detector: per-user complex event processing over orders and clickstream, in event time."
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonOptions,
    #[command(flatten)]
    pub runtime: RuntimeOptions,
    /// Path of a YAML or JSON rule file; the built-in rules apply when absent.
    #[arg(long, env = "FRAUD_RULES_FILE")]
    pub rules_file: Option<PathBuf>,
    /// Input topics that carry ClickEvents, comma-separated; every other input topic carries
    /// OrderEvents.
    #[arg(
        long,
        env = "FRAUD_CLICK_TOPICS",
        value_delimiter = ',',
        default_value = "clickstream"
    )]
    pub click_topics: Vec<String>,
    /// Prefix of the Redis keys alerts are written under.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = DEFAULT_PREFIX, value_parser = parse_prefix)]
    pub redis_key_prefix: String,
}

impl ServiceConfig for Config {
    fn common(&self) -> &CommonOptions {
        &self.common
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Runtime(#[from] trendstream_runtime::config::ConfigError),
    #[error("invalid configuration: FRAUD_RULES_FILE: cannot read {path}: {source}")]
    RulesUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: FRAUD_RULES_FILE: {0}")]
    Rules(#[from] crate::rules::RuleError),
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

pub fn validate(config: &Config) -> Result<Vec<Rule>, ConfigError> {
    config.runtime.validate()?;
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
