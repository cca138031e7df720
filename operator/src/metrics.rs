//! The operator's /metrics (OpenMetrics, prometheus-client): its reconciliations, and per job
//! what it reads from the broker and the workloads (lag, replicas), which outlive the pods.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    category: &'static str,
}

/// One input partition of one job. The labels never collide with the target labels a
/// Prometheus adds (`namespace`, `pod`, `job`), so no scrape configuration renames them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionSeries {
    pub streamjob_namespace: String,
    pub streamjob: String,
    pub consumer_group: String,
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicaSeries {
    pub streamjob_namespace: String,
    pub streamjob: String,
    pub state: &'static str,
}

/// Per-job series, kept by the lag monitor and the reconciler.
#[derive(Default)]
pub struct JobMetrics {
    lag: Family<PartitionSeries, Gauge>,
    committed_age: Family<PartitionSeries, Gauge<f64, AtomicU64>>,
    replicas: Family<ReplicaSeries, Gauge>,
}

impl JobMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "trendstream_job_lag",
            "Records the job's consumer group could still read (read_committed), per input \
             partition, from the broker",
            self.lag.clone(),
        );
        registry.register(
            "trendstream_job_committed_offset_age_seconds",
            "Seconds the group has been behind on the partition without its committed offset \
             advancing (0 while it has nothing to read)",
            self.committed_age.clone(),
        );
        registry.register(
            "trendstream_job_replicas",
            "The job's replicas, desired (0 when suspended) and ready",
            self.replicas.clone(),
        );
    }

    pub fn set_partition(&self, series: &PartitionSeries, lag: i64, age_seconds: f64) {
        self.lag.get_or_create(series).set(lag);
        self.committed_age.get_or_create(series).set(age_seconds);
    }

    pub fn remove_partition(&self, series: &PartitionSeries) {
        self.lag.remove(series);
        self.committed_age.remove(series);
    }

    pub fn set_replicas(&self, namespace: &str, name: &str, desired: i32, ready: i32) {
        for (state, value) in [("desired", desired), ("ready", ready)] {
            self.replicas
                .get_or_create(&ReplicaSeries {
                    streamjob_namespace: namespace.to_owned(),
                    streamjob: name.to_owned(),
                    state,
                })
                .set(i64::from(value));
        }
    }

    pub fn remove_replicas(&self, namespace: &str, name: &str) {
        for state in ["desired", "ready"] {
            self.replicas.remove(&ReplicaSeries {
                streamjob_namespace: namespace.to_owned(),
                streamjob: name.to_owned(),
                state,
            });
        }
    }

    #[cfg(test)]
    pub fn render_for_tests(&self) -> String {
        let mut registry = Registry::default();
        self.register(&mut registry);
        let mut text = String::new();
        let _ = encode(&mut text, &registry);
        text
    }
}

pub struct Metrics {
    registry: Registry,
    pub jobs: Arc<JobMetrics>,
    reconciliations: Family<OutcomeLabels, Counter>,
    failures: Family<ErrorLabels, Counter>,
    duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut root = Registry::default();
        let jobs = Arc::new(JobMetrics::default());
        jobs.register(&mut root);
        let registry = root.sub_registry_with_prefix("trendstream_operator");
        let reconciliations = Family::<OutcomeLabels, Counter>::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            "reconciliations",
            "StreamJob reconciliations by outcome",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciliations by error category",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconciliation",
            duration.clone(),
        );
        Self {
            registry: root,
            jobs,
            reconciliations,
            failures,
            duration,
        }
    }
}

impl Metrics {
    pub fn observe(&self, error_category: Option<&'static str>, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
        let outcome = if error_category.is_some() {
            "error"
        } else {
            "success"
        };
        self.reconciliations
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        if let Some(category) = error_category {
            self.failures.get_or_create(&ErrorLabels { category }).inc();
        }
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
