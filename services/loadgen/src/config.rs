//! The command line (every flag also from an environment variable, as the operator sets them).
//! Bad values fail fast with clap's message naming the flag; cross-field rules fail with a
//! [`ConfigError`] naming the field.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use thiserror::Error;
use trendstream_service::config::{CommonOptions, ServiceConfig};
use trendstream_service::kafka::{KafkaCluster, KafkaSecurity};

use crate::generator::GenConfig;
use crate::record::Partitions;

/// 2026-01-01T00:00:00Z: the default start of simulated time (fixed, so runs are reproducible).
pub const DEFAULT_START_TS: i64 = 1_767_225_600_000;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "loadgen: seeded, rate-limited e-commerce traffic (clickstream and orders) for Kafka, with an event file for verification."
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonOptions,
    /// Kafka bootstrap servers.
    #[arg(
        long = "bootstrap-servers",
        visible_alias = "kafka-bootstrap-servers",
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap_servers: String,
    #[command(flatten)]
    pub kafka_security: KafkaSecurity,
    /// Topic of the click events.
    #[arg(long, env = "LOADGEN_CLICKS_TOPIC", default_value = "clickstream")]
    pub clicks_topic: String,
    /// Topic of the order events.
    #[arg(long, env = "LOADGEN_ORDERS_TOPIC", default_value = "orders")]
    pub orders_topic: String,
    /// Seed of the generator; the same seed (and settings) gives byte-identical records.
    #[arg(long, env = "LOADGEN_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Number of simulated users.
    #[arg(long, env = "LOADGEN_USERS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub users: u32,
    /// Records to produce, poison pills included (the watermark records come on top); 0 = until
    /// SIGTERM or Ctrl-C (which also end a counted run early, with the watermark records).
    #[arg(long, env = "LOADGEN_COUNT", default_value_t = 100_000)]
    pub count: u64,
    /// Records per second; 0 = as fast as possible.
    #[arg(long, env = "LOADGEN_RATE", default_value_t = 1000)]
    pub rate: u64,
    /// Start of simulated event time: epoch milliseconds or RFC 3339.
    #[arg(long, env = "LOADGEN_START_TS", default_value = "2026-01-01T00:00:00Z", value_parser = parse_ts)]
    pub start_ts: i64,
    /// Probability that a session start plants a fraud pattern (rapid orders, high-value first
    /// order, high-value burst).
    #[arg(long, env = "LOADGEN_FRAUD_RATE", default_value_t = 0.01, value_parser = parse_probability)]
    pub fraud_rate: f64,
    /// Probability that an event is delayed to arrive out of order (within --out-of-order-max).
    #[arg(long, env = "LOADGEN_OUT_OF_ORDER_RATE", default_value_t = 0.02, value_parser = parse_probability)]
    pub out_of_order_rate: f64,
    /// Largest delay of an out-of-order event (below --max-out-of-orderness).
    #[arg(long, env = "LOADGEN_OUT_OF_ORDER_MAX", default_value = "20s", value_parser = parse_duration)]
    pub out_of_order_max: Duration,
    /// Probability that an event is held back until it is late (behind its partition's watermark).
    #[arg(long, env = "LOADGEN_LATE_RATE", default_value_t = 0.001, value_parser = parse_probability)]
    pub late_rate: f64,
    /// The processors' bounded out-of-orderness, which defines "late".
    #[arg(long, env = "LOADGEN_MAX_OUT_OF_ORDERNESS", default_value = "30s", value_parser = parse_duration)]
    pub max_out_of_orderness: Duration,
    /// Probability of a poison pill (undecodable or invalid payload) before an event.
    #[arg(long, env = "LOADGEN_POISON_RATE", default_value_t = 0.0, value_parser = parse_probability)]
    pub poison_rate: f64,
    /// Partitions per topic for --dry-run (with Kafka the broker's counts are used).
    #[arg(long, env = "LOADGEN_PARTITIONS", default_value_t = 12, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,
    /// Write every record (topic, partition, key, exact value) to this JSON Lines file.
    #[arg(long, env = "LOADGEN_EVENTS_FILE")]
    pub events_file: Option<PathBuf>,
    /// Write the final summary as JSON to this file (it is always printed as text).
    #[arg(long, env = "LOADGEN_SUMMARY_FILE")]
    pub summary_file: Option<PathBuf>,
    /// Also write the orders into PostgreSQL (the tables of sql/ecommerce.sql), for CDC.
    #[arg(long, env = "LOADGEN_POSTGRES_URL", hide_env_values = true)]
    pub postgres_url: Option<String>,
    /// Where order events go: `kafka` (the orders topic), `postgres` (only the tables, so the
    /// orders topic is fed by cdc-processor) or `both`. `postgres` and `both` need --postgres-url.
    #[arg(long, env = "LOADGEN_ORDERS_SINK", value_enum, default_value = "kafka")]
    pub orders_sink: OrdersSink,
    /// Generate (and write --events-file) without Kafka.
    #[arg(long, env = "LOADGEN_DRY_RUN")]
    pub dry_run: bool,
    /// No progress bar.
    #[arg(long, short, env = "LOADGEN_QUIET")]
    pub quiet: bool,
}

/// Destinations of order events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OrdersSink {
    Kafka,
    Postgres,
    Both,
}

impl OrdersSink {
    pub fn kafka(self) -> bool {
        matches!(self, Self::Kafka | Self::Both)
    }

    pub fn postgres(self) -> bool {
        matches!(self, Self::Postgres | Self::Both)
    }
}

impl ServiceConfig for Config {
    fn common(&self) -> &CommonOptions {
        &self.common
    }
}

/// A setting that clap accepted but that conflicts with another.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: String,
}

impl Config {
    pub fn kafka(&self) -> KafkaCluster {
        KafkaCluster::new(self.bootstrap_servers.clone(), self.kafka_security.clone())
    }

    /// Cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason: String| Err(ConfigError { field, reason });
        if self.out_of_order_max >= self.max_out_of_orderness {
            return err(
                "--out-of-order-max",
                format!(
                    "{:?} must be below --max-out-of-orderness ({:?}), or out-of-order events would be late",
                    self.out_of_order_max, self.max_out_of_orderness
                ),
            );
        }
        if self.out_of_order_rate + self.late_rate > 1.0 {
            return err(
                "--out-of-order-rate",
                "plus --late-rate must not exceed 1".to_owned(),
            );
        }
        for (field, topic) in [
            ("--clicks-topic", &self.clicks_topic),
            ("--orders-topic", &self.orders_topic),
        ] {
            if topic.trim().is_empty() {
                return err(field, "must not be empty".to_owned());
            }
        }
        if let Err(reason) = self.kafka_security.validate() {
            return err("Kafka security", reason.to_string());
        }
        if !self.dry_run && self.bootstrap_servers.trim().is_empty() {
            return err("--bootstrap-servers", "must not be empty".to_owned());
        }
        if self.orders_sink.postgres() && self.postgres_url.is_none() {
            return err(
                "--orders-sink",
                "postgres and both need --postgres-url".to_owned(),
            );
        }
        if self.postgres_url.is_some() && !self.orders_sink.postgres() {
            return err(
                "--postgres-url",
                "is only used with --orders-sink postgres or both".to_owned(),
            );
        }
        if self.start_ts < 0 {
            return err("--start-ts", "must not be before 1970".to_owned());
        }
        Ok(())
    }

    /// The generator settings for these topic partition counts.
    pub fn gen_config(&self, partitions: Partitions) -> GenConfig {
        GenConfig {
            seed: self.seed,
            users: self.users,
            count: self.count,
            start_ts: self.start_ts,
            partitions,
            fraud_rate: self.fraud_rate,
            out_of_order_rate: self.out_of_order_rate,
            out_of_order_max_ms: millis(self.out_of_order_max),
            late_rate: self.late_rate,
            max_out_of_orderness_ms: millis(self.max_out_of_orderness),
            poison_rate: self.poison_rate,
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn parse_probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("must be a number between 0 and 1, got {s:?}")),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    trendstream_service::duration::parse(s).map_err(|e| e.to_string())
}

fn parse_ts(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    trendstream_events::EventTime::parse_rfc3339(s)
        .map(|t| t.millis())
        .map_err(|e| format!("expected epoch milliseconds or RFC 3339: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("loadgen").chain(args.iter().copied()))
    }

    #[test]
    fn the_postgres_orders_sink_needs_a_url_and_the_url_needs_that_sink() {
        let err = parse(&["--orders-sink", "postgres"])
            .expect("parses")
            .validate();
        assert_eq!(err.map_err(|e| e.field), Err("--orders-sink"));
        let err = parse(&["--postgres-url", "postgres://u@h/db"])
            .expect("parses")
            .validate();
        assert_eq!(err.map_err(|e| e.field), Err("--postgres-url"));
        let both = parse(&[
            "--orders-sink",
            "both",
            "--postgres-url",
            "postgres://u@h/db",
        ])
        .expect("parses");
        assert_eq!(both.validate(), Ok(()));
        assert!(both.orders_sink.kafka() && both.orders_sink.postgres());
    }

    #[test]
    fn defaults_are_valid_and_fixed() {
        let config = parse(&[]).expect("defaults");
        assert_eq!(config.start_ts, DEFAULT_START_TS);
        assert_eq!(config.clicks_topic, "clickstream");
        assert_eq!(config.orders_topic, "orders");
        assert_eq!(config.validate(), Ok(()));
        let rfc = parse(&["--start-ts", "2026-01-01T03:00:00+03:00"]).expect("rfc3339");
        assert_eq!(rfc.start_ts, DEFAULT_START_TS);
        let ms = parse(&["--start-ts", "1700000000000"]).expect("ms");
        assert_eq!(ms.start_ts, 1_700_000_000_000);
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (args, flag) in [
            (&["--poison-rate", "1.5"][..], "--poison-rate"),
            (&["--late-rate", "x"][..], "--late-rate"),
            (&["--users", "0"][..], "--users"),
            (&["--start-ts", "yesterday"][..], "--start-ts"),
            (&["--out-of-order-max", "20"][..], "--out-of-order-max"),
            (&["--partitions", "0"][..], "--partitions"),
        ] {
            let message = parse(args).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(message.contains(flag), "{args:?}: {message}");
        }
        let config = parse(&["--out-of-order-max", "30s"]).expect("parses");
        let err = config
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("--out-of-order-max"), "{err}");
        let config = parse(&["--clicks-topic", " "]).expect("parses");
        assert_eq!(
            config.validate().err().map(|e| e.field),
            Some("--clicks-topic")
        );
    }
}
