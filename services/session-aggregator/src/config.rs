//! The binary's configuration: the common service options, the runtime's options and the
//! session settings, from flags or the environment the operator sets.

use clap::Parser;
use std::time::Duration;
use trendstream_events::feature_store::{DEFAULT_PREFIX, KeySpace, parse_prefix};
use trendstream_runtime::RuntimeOptions;
use trendstream_runtime::config::ConfigError;
use trendstream_service::config::{CommonOptions, ServiceConfig};
use trendstream_service::duration;

fn parse_duration(value: &str) -> Result<Duration, String> {
    duration::parse(value).map_err(|err| err.to_string())
}

#[derive(Debug, Parser)]
#[command(
    name = "session-aggregator",
    version,
    about = "session-aggregator: per-user session windows over the clickstream, session summaries and live user features."
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonOptions,
    #[command(flatten)]
    pub runtime: RuntimeOptions,
    /// Inactivity gap (event time) that closes a session, e.g. `30m`.
    #[arg(long, env = "SESSION_GAP", default_value = "30m", value_parser = parse_duration)]
    pub session_gap: Duration,
    /// Prefix of every Redis key written (the feature-store layout's `{p}`).
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = DEFAULT_PREFIX, value_parser = parse_prefix)]
    pub redis_key_prefix: String,
}

impl ServiceConfig for Config {
    fn common(&self) -> &CommonOptions {
        &self.common
    }
}

impl Config {
    /// The runtime's checks, then the session settings'.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.runtime.validate()?;
        self.validate_session()
    }

    /// The checks of the session settings (the runtime checks its own options when it starts).
    pub fn validate_session(&self) -> Result<(), ConfigError> {
        if self.session_gap.is_zero() {
            return Err(ConfigError {
                field: "SESSION_GAP",
                message: "must be positive".into(),
            });
        }
        if self.session_gap_ms() == i64::MAX {
            return Err(ConfigError {
                field: "SESSION_GAP",
                message: "too large".into(),
            });
        }
        Ok(())
    }

    /// The gap in milliseconds.
    pub fn session_gap_ms(&self) -> i64 {
        i64::try_from(self.session_gap.as_millis()).unwrap_or(i64::MAX)
    }

    pub fn key_space(&self) -> KeySpace {
        KeySpace::new(self.redis_key_prefix.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Config, String> {
        let mut args = vec![
            "session-aggregator",
            "--bootstrap-servers",
            "127.0.0.1:9092",
            "--input-topics",
            "clickstream",
            "--output-topic",
            "sessions",
            "--consumer-group",
            "sessions",
            "--instance-id",
            "pod-0",
        ];
        args.extend_from_slice(extra);
        let config = Config::try_parse_from(args).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn defaults() {
        let config = parse(&[]).expect("valid");
        assert_eq!(config.session_gap_ms(), 30 * 60_000);
        assert_eq!(config.key_space().prefix(), "ts");
        let config = parse(&["--session-gap", "1h30m", "--redis-key-prefix", "t9"]).expect("valid");
        assert_eq!(config.session_gap_ms(), 90 * 60_000);
        assert_eq!(config.key_space().user_features("u"), "t9:user:u:features");
    }

    #[test]
    fn errors_name_the_field() {
        let cases: [(&[&str], &str); 5] = [
            (&["--session-gap", "30"], "--session-gap"),
            (&["--session-gap", "0s"], "SESSION_GAP"),
            (&["--redis-key-prefix", "a b"], "REDIS_KEY_PREFIX"),
            (&["--redis-key-prefix", ""], "REDIS_KEY_PREFIX"),
            (&["--input-topics", "sessions"], "KAFKA_OUTPUT_TOPIC"),
        ];
        for (args, field) in cases {
            let err = parse(args).expect_err("invalid");
            assert!(err.contains(field), "{args:?}: {err}");
        }
    }
}
