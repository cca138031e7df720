//! The runtime's Prometheus metrics (DESIGN.md: records in/out per topic, lag per partition,
//! processing latency, watermark delay, state size, checkpoint duration/size, DLQ count).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    pub class: &'static str,
}

pub struct RuntimeMetrics {
    pub records_in: Family<TopicLabels, Counter>,
    pub records_out: Family<TopicLabels, Counter>,
    pub dlq_records: Counter,
    pub late_records: Counter,
    pub future_records: Counter,
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    pub processing_seconds: Histogram,
    pub watermark_delay_seconds: Family<TaskLabels, Gauge<f64, AtomicU64>>,
    pub state_size_bytes: Family<TaskLabels, Gauge>,
    pub assigned_partitions: Gauge,
    pub transactions: Family<OutcomeLabels, Counter>,
    pub transaction_failures: Family<ClassLabels, Counter>,
    pub abort_seconds: Histogram,
    pub retrying: Gauge,
    pub producer_recreations: Counter,
    pub commit_seconds: Histogram,
    pub commit_phase_seconds: Family<PhaseLabels, Histogram>,
    pub checkpoint_seconds: Histogram,
    pub checkpoint_uploaded_bytes: Counter,
    pub checkpoint_reused_bytes: Counter,
    pub checkpoints: Family<OutcomeLabels, Counter>,
    pub restore_seconds: Histogram,
    pub restored_records: Counter,
    pub paused: Gauge,
    pub rebalances: Family<KindLabels, Counter>,
    pub redis_write_errors: Counter,
    pub checkpoint_last_success: Gauge<f64, AtomicU64>,
    pub last_commit: Gauge<f64, AtomicU64>,
    pub checkpoint_interval_seconds: Gauge<f64, AtomicU64>,
    pub restore_failures: Counter,
}

impl RuntimeMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            records_in: Family::default(),
            records_out: Family::default(),
            dlq_records: Counter::default(),
            late_records: Counter::default(),
            future_records: Counter::default(),
            consumer_lag: Family::default(),
            processing_seconds: Histogram::new(exponential_buckets(0.000_01, 4.0, 10)),
            watermark_delay_seconds: Family::default(),
            state_size_bytes: Family::default(),
            assigned_partitions: Gauge::default(),
            transactions: Family::default(),
            transaction_failures: Family::default(),
            abort_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            retrying: Gauge::default(),
            producer_recreations: Counter::default(),
            commit_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            commit_phase_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 14))
            }),
            checkpoint_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            checkpoint_uploaded_bytes: Counter::default(),
            checkpoint_reused_bytes: Counter::default(),
            checkpoints: Family::default(),
            restore_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            restored_records: Counter::default(),
            paused: Gauge::default(),
            rebalances: Family::default(),
            redis_write_errors: Counter::default(),
            checkpoint_last_success: Gauge::default(),
            last_commit: Gauge::default(),
            checkpoint_interval_seconds: Gauge::default(),
            restore_failures: Counter::default(),
        };
        let r = registry;
        r.register(
            "records_in",
            "Input records read, per topic",
            metrics.records_in.clone(),
        );
        r.register(
            "records_out",
            "Records produced, per topic",
            metrics.records_out.clone(),
        );
        r.register(
            "dlq_records",
            "Records sent to the dead-letter topic",
            metrics.dlq_records.clone(),
        );
        r.register(
            "late_records",
            "Records sent to the late topic",
            metrics.late_records.clone(),
        );
        r.register(
            "future_records",
            "Records dead-lettered because their event time was further than MAX_FUTURE_SKEW ahead of the wall clock",
            metrics.future_records.clone(),
        );
        r.register(
            "consumer_lag",
            "Records a read_committed consumer could still read: last stable offset minus position",
            metrics.consumer_lag.clone(),
        );
        r.register(
            "processing_seconds",
            "Time to process one input record",
            metrics.processing_seconds.clone(),
        );
        r.register(
            "watermark_delay_seconds",
            "Newest event time minus the watermark, per partition",
            metrics.watermark_delay_seconds.clone(),
        );
        r.register(
            "state_size_bytes",
            "RocksDB SST bytes, per partition",
            metrics.state_size_bytes.clone(),
        );
        r.register(
            "assigned_partitions",
            "Input partitions this replica owns",
            metrics.assigned_partitions.clone(),
        );
        r.register(
            "transactions",
            "Kafka transactions, by outcome",
            metrics.transactions.clone(),
        );
        r.register(
            "transaction_failures",
            "Failed (aborted) transactions, by failure class: transient, record, fatal",
            metrics.transaction_failures.clone(),
        );
        r.register(
            "abort_seconds",
            "Time to abort a failed transaction (or re-create the producer)",
            metrics.abort_seconds.clone(),
        );
        r.register(
            "retrying",
            "1 while input is held after a failed transaction (abort, backoff)",
            metrics.retrying.clone(),
        );
        r.register(
            "producer_recreations",
            "Transactional producers re-created after a fatal error",
            metrics.producer_recreations.clone(),
        );
        r.register(
            "commit_seconds",
            "Time to commit one transaction",
            metrics.commit_seconds.clone(),
        );
        r.register(
            "commit_phase_seconds",
            "Time in each phase of a commit: changelog, redis, offsets, kafka_commit",
            metrics.commit_phase_seconds.clone(),
        );
        r.register(
            "checkpoint_seconds",
            "Time to make and upload one partition checkpoint",
            metrics.checkpoint_seconds.clone(),
        );
        r.register(
            "checkpoint_uploaded_bytes",
            "Checkpoint bytes uploaded to GCS",
            metrics.checkpoint_uploaded_bytes.clone(),
        );
        r.register(
            "checkpoint_reused_bytes",
            "Checkpoint bytes already in GCS (incremental)",
            metrics.checkpoint_reused_bytes.clone(),
        );
        r.register(
            "checkpoints",
            "Partition checkpoints, by outcome",
            metrics.checkpoints.clone(),
        );
        r.register(
            "restore_seconds",
            "Time to restore a partition's state",
            metrics.restore_seconds.clone(),
        );
        r.register(
            "restored_records",
            "Changelog records replayed during restores",
            metrics.restored_records.clone(),
        );
        r.register(
            "paused",
            "1 while input is paused: backpressure, or held after a failed transaction",
            metrics.paused.clone(),
        );
        r.register(
            "rebalances",
            "Consumer-group rebalances this replica took part in, by kind: assign, revoke",
            metrics.rebalances.clone(),
        );
        r.register(
            "redis_write_errors",
            "Transactions failed by a Redis feature-store write",
            metrics.redis_write_errors.clone(),
        );
        r.register(
            "checkpoint_last_success_timestamp_seconds",
            "Unix time of this replica's newest completed checkpoint (its start before the first)",
            metrics.checkpoint_last_success.clone(),
        );
        r.register(
            "last_commit_timestamp_seconds",
            "Unix time of this replica's newest committed transaction",
            metrics.last_commit.clone(),
        );
        r.register(
            "checkpoint_interval_seconds",
            "The configured checkpoint interval",
            metrics.checkpoint_interval_seconds.clone(),
        );
        r.register(
            "restore_failures",
            "Partition state restores that failed (the replica stops and restarts)",
            metrics.restore_failures.clone(),
        );
        // A replica that never completes a checkpoint shows its age from the start.
        metrics.checkpoint_completed();
        metrics
    }
}

impl RuntimeMetrics {
    /// A checkpoint completed now (alerts compare it with the newest commit).
    pub fn checkpoint_completed(&self) {
        self.checkpoint_last_success.set(unix_now());
    }

    /// A transaction committed now.
    pub fn committed(&self) {
        self.last_commit.set(unix_now());
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
