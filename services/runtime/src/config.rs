//! The runtime's typed configuration, from flags or the environment the operator sets.
//!
//! Every value is parsed and checked when the process starts (clap names the offending flag or
//! variable); [`RuntimeOptions::validate`] adds the cross-field checks.

use crate::upgrade::{UpgradeMode, parse_epoch};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use trendstream_service::duration;
use trendstream_service::kafka::{KafkaCluster, KafkaSecurity};
use trendstream_service::redis::RedisAuth;

const MIN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(15 * 60);

fn parse_duration(value: &str) -> Result<Duration, String> {
    duration::parse(value).map_err(|err| err.to_string())
}

/// Options of the streaming runtime, shared by every processor.
#[derive(Debug, Clone, Args)]
pub struct RuntimeOptions {
    /// Kafka bootstrap servers, `host:port[,host:port]`.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: String,

    #[command(flatten)]
    pub kafka_security: KafkaSecurity,

    /// Input topics, comma-separated; co-partitioned (partition N of each is one task).
    #[arg(
        long,
        env = "KAFKA_INPUT_TOPICS",
        value_delimiter = ',',
        required = true
    )]
    pub input_topics: Vec<String>,

    /// Main output topic.
    #[arg(long, env = "KAFKA_OUTPUT_TOPIC")]
    pub output_topic: String,

    /// Consumer group; also names the changelog topics and the GCS checkpoint scope.
    #[arg(long, env = "KAFKA_CONSUMER_GROUP")]
    pub consumer_group: String,

    /// Stable identity of this replica (static group membership and transactional id).
    /// Defaults to the pod name; a restarted pod keeps its partitions without a rebalance.
    #[arg(long, env = "POD_NAME")]
    pub instance_id: String,

    /// Where the per-partition RocksDB state lives (the PVC).
    #[arg(long, env = "STATE_DIR", default_value = "/var/lib/trendstream/state")]
    pub state_dir: PathBuf,

    /// How often the transaction (outputs, changelog, offsets) commits.
    #[arg(long, env = "COMMIT_INTERVAL", default_value = "100ms", value_parser = parse_duration)]
    pub commit_interval: Duration,

    /// Records per transaction at most, whatever the interval.
    #[arg(long, env = "COMMIT_MAX_RECORDS", default_value_t = 10_000)]
    pub commit_max_records: usize,

    /// How often partitions are checkpointed (RocksDB checkpoint, uploaded to GCS).
    #[arg(long, env = "CHECKPOINT_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub checkpoint_interval: Duration,

    /// GCS checkpoints kept per partition.
    #[arg(long, env = "CHECKPOINT_RETAINED", default_value_t = 3)]
    pub checkpoint_retained: usize,

    /// GCS bucket for checkpoints; none keeps them on the PVC only.
    #[arg(long, env = "GCS_BUCKET")]
    pub gcs_bucket: Option<String>,

    /// Object prefix inside the bucket.
    #[arg(long, env = "GCS_PREFIX", default_value = "checkpoints")]
    pub gcs_prefix: String,

    /// GCS endpoint override (the emulator), an http(s) URL; unset means storage.googleapis.com
    /// with Workload Identity credentials.
    #[arg(long, env = "GCS_ENDPOINT", value_parser = parse_http_url)]
    pub gcs_endpoint: Option<String>,

    /// What a replica does with a partition's state after the pod template changed:
    /// `last-state` keeps it, `stateless` starts empty from the end of the input
    /// (docs/upgrades.md).
    #[arg(long, env = "UPGRADE_MODE", value_enum, default_value = "last-state")]
    pub upgrade_mode: UpgradeMode,

    /// Identity of the pod template (the operator sets the StatefulSet revision); required by,
    /// and only meaningful for, `stateless`.
    #[arg(long, env = "UPGRADE_EPOCH", value_parser = parse_epoch)]
    pub upgrade_epoch: Option<String>,

    /// Bounded out-of-orderness of event time.
    #[arg(long, env = "MAX_OUT_OF_ORDERNESS", default_value = "30s", value_parser = parse_duration)]
    pub max_out_of_orderness: Duration,

    /// How long after a window fires late records still update it.
    #[arg(long, env = "ALLOWED_LATENESS", default_value = "0s", value_parser = parse_duration)]
    pub allowed_lateness: Duration,

    /// A record whose event time is further than this ahead of the wall clock is dead-lettered
    /// instead of processed: one clock gone wrong (a year 9999) would otherwise move its
    /// partition's watermark past everything to come.
    #[arg(long, env = "MAX_FUTURE_SKEW", default_value = "1h", value_parser = parse_duration)]
    pub max_future_skew: Duration,

    /// How long SIGTERM may take: the replica stops taking input, commits, checkpoints and
    /// leaves its group within it, or exits anyway when it runs out (what was not committed is
    /// replayed by the partitions' next owner). Keep it below the pod's termination grace
    /// period (60 s in the pods the operator creates).
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// A partition without records this long stops holding event time back.
    #[arg(long, env = "IDLE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Late records go here (never dropped).
    #[arg(long, env = "KAFKA_LATE_TOPIC", default_value = "late-events")]
    pub late_topic: String,

    /// Dead-letter topic; default `dlq.<service>`.
    #[arg(long, env = "KAFKA_DLQ_TOPIC")]
    pub dlq_topic: Option<String>,

    /// Redis for idempotent sinks; none disables them.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    #[command(flatten)]
    pub redis_auth: RedisAuth,

    /// Consumer session timeout: how long a silent replica keeps its partitions.
    #[arg(long, env = "KAFKA_SESSION_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub session_timeout: Duration,

    /// Producer messages in flight above which input partitions are paused (backpressure).
    #[arg(long, env = "PRODUCER_MAX_IN_FLIGHT", default_value_t = 50_000)]
    pub producer_max_in_flight: i32,

    /// Replication factor of the changelog topics the runtime creates.
    #[arg(long, env = "CHANGELOG_REPLICATION_FACTOR", default_value_t = 1)]
    pub changelog_replication_factor: i32,

    /// The broker aborts a transaction open longer than this (the producer's
    /// `transaction.timeout.ms`; at most the broker's `transaction.max.timeout.ms`, 15m by default).
    #[arg(long, env = "KAFKA_TRANSACTION_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub transaction_timeout: Duration,

    /// Wait before replaying after the first failed transaction; doubles with each further
    /// failure in a row (with jitter), up to `TRANSACTION_RETRY_BACKOFF_MAX`.
    #[arg(long, env = "TRANSACTION_RETRY_BACKOFF", default_value = "100ms", value_parser = parse_duration)]
    pub retry_backoff: Duration,

    /// The longest wait between retries of failed transactions.
    #[arg(long, env = "TRANSACTION_RETRY_BACKOFF_MAX", default_value = "5s", value_parser = parse_duration)]
    pub retry_backoff_max: Duration,

    /// `/health/live` fails once processed work has waited this long without a committed
    /// transaction (stuck, not merely retrying), so Kubernetes restarts the pod.
    #[arg(long, env = "STUCK_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub stuck_timeout: Duration,

    /// How long connecting to Redis, or applying one batch of writes, may take; longer fails
    /// the transaction (retried).
    #[arg(long, env = "REDIS_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub redis_timeout: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {field}: {message}")]
pub struct ConfigError {
    pub field: &'static str,
    pub message: String,
}

impl RuntimeOptions {
    /// Cross-field checks clap cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field, message: &str| {
            Err(ConfigError {
                field,
                message: message.to_owned(),
            })
        };
        if let Err(err) = self.kafka_security.validate() {
            return fail("Kafka security", &err.to_string());
        }
        if self.input_topics.iter().any(|t| t.trim().is_empty()) {
            return fail("KAFKA_INPUT_TOPICS", "empty topic name");
        }
        if self.input_topics.contains(&self.output_topic) {
            return fail("KAFKA_OUTPUT_TOPIC", "must differ from the input topics");
        }
        if self.instance_id.trim().is_empty() {
            return fail("POD_NAME", "must not be empty");
        }
        if self.commit_interval.is_zero() {
            return fail("COMMIT_INTERVAL", "must be positive");
        }
        if self.commit_max_records == 0 {
            return fail("COMMIT_MAX_RECORDS", "must be positive");
        }
        if self.checkpoint_retained == 0 {
            return fail("CHECKPOINT_RETAINED", "keep at least one checkpoint");
        }
        if self.session_timeout < Duration::from_secs(6) {
            return fail(
                "KAFKA_SESSION_TIMEOUT",
                "the broker's minimum is 6s (group.min.session.timeout.ms)",
            );
        }
        if self.producer_max_in_flight <= 0 {
            return fail("PRODUCER_MAX_IN_FLIGHT", "must be positive");
        }
        if !(MIN_TRANSACTION_TIMEOUT..=MAX_TRANSACTION_TIMEOUT).contains(&self.transaction_timeout)
        {
            return fail(
                "KAFKA_TRANSACTION_TIMEOUT",
                "must be from 1s (librdkafka's minimum) to 15m (the broker's default maximum)",
            );
        }
        if self.transaction_timeout <= self.commit_interval {
            return fail(
                "KAFKA_TRANSACTION_TIMEOUT",
                "must be longer than COMMIT_INTERVAL, or every transaction times out",
            );
        }
        if self.retry_backoff.is_zero() {
            return fail("TRANSACTION_RETRY_BACKOFF", "must be positive");
        }
        if self.retry_backoff_max < self.retry_backoff {
            return fail(
                "TRANSACTION_RETRY_BACKOFF_MAX",
                "must be at least TRANSACTION_RETRY_BACKOFF",
            );
        }
        if self.stuck_timeout <= self.transaction_timeout.max(self.retry_backoff_max) {
            return fail(
                "STUCK_TIMEOUT",
                "must be longer than KAFKA_TRANSACTION_TIMEOUT and TRANSACTION_RETRY_BACKOFF_MAX \
                 (one commit, or one wait between retries, may take that long)",
            );
        }
        if self.redis_timeout.is_zero() {
            return fail("REDIS_TIMEOUT", "must be positive");
        }
        match (self.upgrade_mode, &self.upgrade_epoch) {
            (UpgradeMode::Stateless, None) => {
                return fail(
                    "UPGRADE_EPOCH",
                    "required with UPGRADE_MODE=stateless: it tells a new pod template from a restart",
                );
            }
            (UpgradeMode::LastState, Some(_)) => {
                return fail("UPGRADE_EPOCH", "only used with UPGRADE_MODE=stateless");
            }
            _ => {}
        }
        Ok(())
    }

    /// The brokers and how to reach them, for every client the runtime makes.
    pub fn kafka(&self) -> KafkaCluster {
        KafkaCluster::new(self.bootstrap_servers.clone(), self.kafka_security.clone())
    }

    pub fn dlq_topic(&self, service: &str) -> String {
        self.dlq_topic
            .clone()
            .unwrap_or_else(|| format!("dlq.{service}"))
    }

    /// The changelog topic of a state store.
    pub fn changelog_topic(&self, store: &str) -> String {
        format!("{}-{store}-changelog", self.consumer_group)
    }

    pub fn max_out_of_orderness_ms(&self) -> i64 {
        millis(self.max_out_of_orderness)
    }

    pub fn allowed_lateness_ms(&self) -> i64 {
        millis(self.allowed_lateness)
    }

    pub fn max_future_skew_ms(&self) -> i64 {
        millis(self.max_future_skew)
    }

    /// The prefix of the partitions' Redis fencing tokens (`<prefix>:<partition>`).
    pub fn fence_prefix(&self) -> String {
        format!("trendstream:fence:{}", self.consumer_group)
    }

    /// The transactional id: stable per replica, so a restarted pod fences its previous life.
    pub fn transactional_id(&self) -> String {
        format!("{}-{}", self.consumer_group, self.instance_id)
    }
}

/// An `http://` or `https://` URL with a host: anything else would send checkpoints elsewhere.
fn parse_http_url(value: &str) -> Result<String, String> {
    let host = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"))
        .map(|rest| rest.split('/').next().unwrap_or_default());
    match host {
        Some(host) if !host.is_empty() && !value.contains(char::is_whitespace) => {
            Ok(value.to_owned())
        }
        _ => Err(format!(
            "{value:?} is not an http(s) URL such as http://127.0.0.1:9023"
        )),
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        runtime: RuntimeOptions,
    }

    fn parse(extra: &[&str]) -> Result<RuntimeOptions, String> {
        let mut args = vec![
            "test",
            "--bootstrap-servers",
            "127.0.0.1:9092",
            "--input-topics",
            "orders,clicks",
            "--output-topic",
            "out",
            "--consumer-group",
            "g",
            "--instance-id",
            "pod-0",
        ];
        args.extend_from_slice(extra);
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        cli.runtime.validate().map_err(|e| e.to_string())?;
        Ok(cli.runtime)
    }

    #[test]
    fn defaults_and_derived_names() {
        let options = parse(&[]).expect("valid");
        assert_eq!(options.input_topics, ["orders", "clicks"]);
        assert_eq!(options.max_out_of_orderness_ms(), 30_000);
        assert_eq!(options.max_future_skew_ms(), 3_600_000);
        assert_eq!(options.commit_interval, Duration::from_millis(100));
        assert_eq!(options.dlq_topic("fraud-detector"), "dlq.fraud-detector");
        assert_eq!(options.changelog_topic("counts"), "g-counts-changelog");
        assert_eq!(options.transactional_id(), "g-pod-0");
        assert_eq!(options.transaction_timeout, Duration::from_secs(60));
        assert_eq!(
            (options.retry_backoff, options.retry_backoff_max),
            (Duration::from_millis(100), Duration::from_secs(5))
        );
        assert_eq!(options.stuck_timeout, Duration::from_secs(300));
        assert_eq!(options.upgrade_mode, UpgradeMode::LastState);
        assert_eq!(options.gcs_endpoint, None);
        let options = parse(&[
            "--upgrade-mode",
            "stateless",
            "--upgrade-epoch",
            "fraud-6d4b9c7f8",
            "--gcs-endpoint",
            "http://127.0.0.1:9023",
        ])
        .expect("valid");
        assert_eq!(options.upgrade_mode, UpgradeMode::Stateless);
        assert_eq!(options.upgrade_epoch.as_deref(), Some("fraud-6d4b9c7f8"));
    }

    #[test]
    fn errors_name_the_field() {
        let cases: [(&[&str], &str); 16] = [
            (&["--commit-interval", "soon"], "soon"),
            (&["--input-topics", "out"], "KAFKA_OUTPUT_TOPIC"),
            (&["--checkpoint-retained", "0"], "CHECKPOINT_RETAINED"),
            (&["--session-timeout", "1s"], "KAFKA_SESSION_TIMEOUT"),
            (&["--gcs-endpoint", "gcs:9023"], "--gcs-endpoint"),
            (&["--gcs-endpoint", "http://"], "--gcs-endpoint"),
            (&["--upgrade-mode", "savepoint"], "--upgrade-mode"),
            (&["--upgrade-mode", "stateless"], "UPGRADE_EPOCH"),
            (&["--upgrade-epoch", "abc"], "UPGRADE_EPOCH"),
            (
                &["--transaction-timeout", "500ms"],
                "KAFKA_TRANSACTION_TIMEOUT",
            ),
            (
                &["--transaction-timeout", "1h"],
                "KAFKA_TRANSACTION_TIMEOUT",
            ),
            (
                &["--transaction-timeout", "2s", "--commit-interval", "2s"],
                "KAFKA_TRANSACTION_TIMEOUT",
            ),
            (&["--retry-backoff", "0s"], "TRANSACTION_RETRY_BACKOFF"),
            (
                &["--retry-backoff", "2s", "--retry-backoff-max", "1s"],
                "TRANSACTION_RETRY_BACKOFF_MAX",
            ),
            (&["--stuck-timeout", "60s"], "STUCK_TIMEOUT"),
            (&["--redis-timeout", "0ms"], "REDIS_TIMEOUT"),
        ];
        for (args, field) in cases {
            let err = parse(args).expect_err("invalid");
            assert!(err.contains(field), "{args:?}: {err}");
        }
    }
}
