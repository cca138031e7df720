//! pg-capture's typed configuration (flags or environment variables).

use std::time::Duration;

use clap::Parser;
use trendstream_service::config::{CommonOptions, ServiceConfig};
use trendstream_service::duration;
use trendstream_service::kafka::{KafkaCluster, KafkaSecurity};

fn parse_duration(value: &str) -> Result<Duration, String> {
    duration::parse(value).map_err(|err| err.to_string())
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "pg-capture",
    version,
    about = "pg-capture: PostgreSQL logical replication (pgoutput) to Debezium-compatible change topics, exactly once."
)]
pub struct CaptureConfig {
    #[command(flatten)]
    pub common: CommonOptions,
    /// PostgreSQL connection URL (a role with REPLICATION, or the table owner).
    #[arg(long, env = "PG_URL", hide_env_values = true)]
    pub postgres_url: String,
    /// Publication naming the captured tables.
    #[arg(
        long,
        env = "PG_CAPTURE_PUBLICATION",
        default_value = "trendstream_cdc"
    )]
    pub publication: String,
    /// Logical replication slot (created with pgoutput on first start).
    #[arg(long, env = "PG_CAPTURE_SLOT", default_value = "trendstream_cdc")]
    pub slot: String,
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: String,
    #[command(flatten)]
    pub kafka_security: KafkaSecurity,
    /// Topic prefix (Debezium's `topic.prefix`): records go to `<prefix>.<schema>.<table>`.
    #[arg(long, env = "CDC_TOPIC_PREFIX", default_value = "shop")]
    pub topic_prefix: String,
    /// The compacted topic holding the committed position; default `<prefix>.pg-capture-offsets`.
    #[arg(long, env = "PG_CAPTURE_OFFSETS_TOPIC")]
    pub offsets_topic: Option<String>,
    /// Partitions of change topics created by the capture.
    #[arg(long, env = "PG_CAPTURE_PARTITIONS", default_value_t = 12, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,
    /// Replication factor of the topics the capture creates.
    #[arg(long, env = "PG_CAPTURE_REPLICATION_FACTOR", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub replication_factor: i32,
    /// How long to wait before asking for changes again when there were none.
    #[arg(long, env = "PG_CAPTURE_POLL_INTERVAL", default_value = "200ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Changes per Kafka transaction, about (PostgreSQL transactions are never split).
    #[arg(long, env = "PG_CAPTURE_BATCH", default_value_t = 5000, value_parser = clap::value_parser!(i32).range(1..))]
    pub batch: i32,
    /// Wait after a failure (PostgreSQL or Kafka down, slot or publication dropped) before
    /// trying again; the process stays up and reports not ready meanwhile.
    #[arg(long, env = "PG_CAPTURE_RETRY_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub retry_interval: Duration,
    /// Test hook: abort the process after the Nth streamed batch committed to Kafka and before
    /// it is acknowledged to PostgreSQL (the crash window exactly-once has to cover).
    #[arg(long, env = "PG_CAPTURE_TEST_ABORT_BEFORE_ACK", hide = true)]
    pub test_abort_before_ack: Option<u64>,
}

impl ServiceConfig for CaptureConfig {
    fn common(&self) -> &CommonOptions {
        &self.common
    }
}

/// A setting clap accepted that breaks a cross-field rule.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {field}: {message}")]
pub struct ConfigError {
    pub field: &'static str,
    pub message: String,
}

fn identifier(field: &'static str, value: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            field,
            message: format!("{value:?}: 1-63 of a-z 0-9 _ (a PostgreSQL slot name)"),
        })
    }
}

impl CaptureConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        identifier("PG_CAPTURE_SLOT", &self.slot)?;
        if self.publication.trim().is_empty() {
            return Err(ConfigError {
                field: "PG_CAPTURE_PUBLICATION",
                message: "must not be empty".into(),
            });
        }
        if self.bootstrap_servers.trim().is_empty() {
            return Err(ConfigError {
                field: "KAFKA_BOOTSTRAP_SERVERS",
                message: "must not be empty".into(),
            });
        }
        self.kafka_security.validate().map_err(|err| ConfigError {
            field: "Kafka security",
            message: err.to_string(),
        })?;
        if self.topic_prefix.trim().is_empty() || self.topic_prefix.contains(char::is_whitespace) {
            return Err(ConfigError {
                field: "CDC_TOPIC_PREFIX",
                message: "must be a non-empty topic name part".into(),
            });
        }
        if !(self.postgres_url.starts_with("postgres://")
            || self.postgres_url.starts_with("postgresql://"))
        {
            return Err(ConfigError {
                field: "PG_URL",
                message: "expected a postgres:// URL".into(),
            });
        }
        Ok(())
    }

    pub fn offsets_topic(&self) -> String {
        self.offsets_topic
            .clone()
            .unwrap_or_else(|| format!("{}.pg-capture-offsets", self.topic_prefix))
    }

    pub fn kafka(&self) -> KafkaCluster {
        KafkaCluster::new(self.bootstrap_servers.clone(), self.kafka_security.clone())
    }

    /// Stable across restarts, so a restarted capture fences the one it replaces.
    pub fn transactional_id(&self) -> String {
        format!("pg-capture-{}", self.slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with_url(url: &str, extra: &[&str]) -> CaptureConfig {
        let args = [
            "pg-capture",
            "--postgres-url",
            url,
            "--bootstrap-servers",
            "127.0.0.1:9092",
        ];
        CaptureConfig::try_parse_from(args.iter().chain(extra)).expect("parses")
    }

    fn parse(extra: &[&str]) -> CaptureConfig {
        parse_with_url("postgres://u@127.0.0.1/db", extra)
    }

    #[test]
    fn defaults_validate_and_bad_slots_are_named() {
        let config = parse(&[]);
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.offsets_topic(), "shop.pg-capture-offsets");
        let err = parse(&["--slot", "Bad-Slot"])
            .validate()
            .expect_err("invalid");
        assert_eq!(err.field, "PG_CAPTURE_SLOT");
        let err = parse_with_url("mysql://x", &[])
            .validate()
            .expect_err("invalid");
        assert_eq!(err.field, "PG_URL");
    }
}
