//! Consumer lag of every job, read from the broker in the background.
//!
//! Lag is what a `read_committed` consumer of the job's group could still read: per input
//! partition, the last stable offset minus the group's committed offset. It comes from the
//! broker, not from the job's pods, so it is known (and keeps growing) while every replica is
//! down or the job is suspended. Reconciliations register their job and read the last answer;
//! one loop asks the broker for all of them, so status updates never wait for Kafka.

use crate::kafka::{KafkaInspector, PartitionLag};
use crate::metrics::{JobMetrics, PartitionSeries};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use trendstream_service::kafka::KafkaCluster;

/// What to ask the broker about one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LagTarget {
    pub namespace: String,
    pub name: String,
    pub kafka: KafkaCluster,
    pub group: String,
    pub topics: Vec<String>,
}

/// One partition's last reading.
#[derive(Clone, Debug)]
struct Reading {
    committed: Option<i64>,
    lag: i64,
    /// Since when the group has been behind on this partition without advancing.
    waiting_since: Instant,
}

type JobKey = (String, String);
/// One reading per input (topic, partition).
type Readings = HashMap<(String, i32), Reading>;

#[derive(Default)]
struct Watched {
    targets: HashMap<JobKey, LagTarget>,
    /// Per job: the group the readings are of, and one reading per (topic, partition).
    readings: HashMap<JobKey, (String, Readings)>,
}

/// The jobs whose lag is watched and their last readings.
pub struct LagMonitor {
    kafka: KafkaInspector,
    metrics: Arc<JobMetrics>,
    watched: Mutex<Watched>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl LagMonitor {
    pub fn new(kafka: KafkaInspector, metrics: Arc<JobMetrics>) -> Self {
        Self {
            kafka,
            metrics,
            watched: Mutex::default(),
        }
    }

    /// Registers (or updates) `target` and returns its last known total lag.
    pub fn observe(&self, target: LagTarget) -> Option<i64> {
        if let KafkaInspector::Fixed { lag, .. } = &self.kafka {
            return *lag;
        }
        let key = (target.namespace.clone(), target.name.clone());
        let mut watched = lock(&self.watched);
        let total = watched
            .readings
            .get(&key)
            .filter(|_| watched.targets.get(&key) == Some(&target))
            .map(|(_, readings)| readings.values().map(|r| r.lag).sum());
        if watched.targets.get(&key) != Some(&target) {
            // Other topics or another group: the old readings no longer describe the job.
            if let Some((group, old)) = watched.readings.remove(&key) {
                self.remove_series(&key, &group, old.keys());
            }
            watched.targets.insert(key, target);
        }
        total
    }

    /// Stops watching a job (deleted, or no longer reading Kafka) and drops its series.
    pub fn forget(&self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        let mut watched = lock(&self.watched);
        watched.targets.remove(&key);
        if let Some((group, old)) = watched.readings.remove(&key) {
            self.remove_series(&key, &group, old.keys());
        }
    }

    fn remove_series<'a>(
        &self,
        key: &JobKey,
        group: &str,
        partitions: impl Iterator<Item = &'a (String, i32)>,
    ) {
        for (topic, partition) in partitions {
            self.metrics
                .remove_partition(&series(key, group, topic, *partition));
        }
    }

    /// Asks the broker for every watched job, every `interval`, until the process ends.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let targets: Vec<LagTarget> = lock(&self.watched).targets.values().cloned().collect();
            let queries = targets.into_iter().map(|target| {
                let monitor = self.clone();
                async move {
                    let answer = monitor
                        .kafka
                        .partition_lags(&target.kafka, &target.group, &target.topics)
                        .await;
                    match answer {
                        Ok(lags) => monitor.record(&target, &lags, Instant::now()),
                        Err(err) => tracing::debug!(
                            job = %format!("{}/{}", target.namespace, target.name),
                            %err,
                            "consumer lag unavailable"
                        ),
                    }
                }
            });
            // The inspector bounds how many queries run at once.
            futures::future::join_all(queries).await;
        }
    }

    /// Stores one answer of the broker and updates the job's series.
    fn record(&self, target: &LagTarget, lags: &[PartitionLag], now: Instant) {
        let key = (target.namespace.clone(), target.name.clone());
        let mut watched = lock(&self.watched);
        if watched.targets.get(&key) != Some(target) {
            return; // forgotten or changed while the broker answered
        }
        let previous = watched
            .readings
            .remove(&key)
            .map(|(_, readings)| readings)
            .unwrap_or_default();
        let mut readings = Readings::new();
        for lag in lags {
            let partition = (lag.topic.clone(), lag.partition);
            let waiting_since = match previous.get(&partition) {
                Some(before)
                    if lag.lag > 0 && before.lag > 0 && before.committed == lag.committed =>
                {
                    before.waiting_since
                }
                _ => now,
            };
            let labels = series(&key, &target.group, &lag.topic, lag.partition);
            self.metrics.set_partition(
                &labels,
                lag.lag,
                if lag.lag > 0 {
                    now.duration_since(waiting_since).as_secs_f64()
                } else {
                    0.0
                },
            );
            readings.insert(
                partition,
                Reading {
                    committed: lag.committed,
                    lag: lag.lag,
                    waiting_since,
                },
            );
        }
        let current: HashSet<&(String, i32)> = readings.keys().collect();
        let gone: Vec<(String, i32)> = previous
            .keys()
            .filter(|p| !current.contains(p))
            .cloned()
            .collect();
        self.remove_series(&key, &target.group, gone.iter());
        watched
            .readings
            .insert(key, (target.group.clone(), readings));
    }
}

fn series(key: &JobKey, group: &str, topic: &str, partition: i32) -> PartitionSeries {
    PartitionSeries {
        streamjob_namespace: key.0.clone(),
        streamjob: key.1.clone(),
        consumer_group: group.to_owned(),
        topic: topic.to_owned(),
        partition,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> LagTarget {
        LagTarget {
            namespace: "shop".into(),
            name: "fraud".into(),
            kafka: KafkaCluster::new("kafka:9092", Default::default()),
            group: "shop.fraud".into(),
            topics: vec!["orders".into()],
        }
    }

    fn lag(partition: i32, committed: Option<i64>, lag: i64) -> PartitionLag {
        PartitionLag {
            topic: "orders".into(),
            partition,
            committed,
            lag,
        }
    }

    fn monitor() -> (LagMonitor, Arc<JobMetrics>) {
        let metrics = Arc::new(JobMetrics::default());
        let kafka = KafkaInspector::broker(Duration::from_secs(1));
        (LagMonitor::new(kafka, metrics.clone()), metrics)
    }

    #[test]
    fn the_total_is_known_after_the_first_answer() {
        let (monitor, _) = monitor();
        assert_eq!(monitor.observe(target()), None);
        let now = Instant::now();
        monitor.record(&target(), &[lag(0, Some(5), 3), lag(1, None, 4)], now);
        assert_eq!(monitor.observe(target()), Some(7));
    }

    #[test]
    fn age_grows_only_while_behind_and_not_advancing() {
        let (monitor, metrics) = monitor();
        monitor.observe(target());
        let start = Instant::now();
        monitor.record(&target(), &[lag(0, Some(5), 3), lag(1, Some(9), 0)], start);
        let later = start + Duration::from_secs(30);
        monitor.record(&target(), &[lag(0, Some(5), 8), lag(1, Some(9), 0)], later);
        let text = metrics.render_for_tests();
        assert!(text.contains(r#"partition="0"} 30"#), "{text}");
        assert!(text.contains(r#"partition="1"} 0"#), "{text}");
        // Advancing resets the age even with lag left.
        let after = later + Duration::from_secs(10);
        monitor.record(&target(), &[lag(0, Some(6), 8), lag(1, Some(9), 0)], after);
        let text = metrics.render_for_tests();
        assert!(
            text.contains(r#"trendstream_job_committed_offset_age_seconds{streamjob_namespace="shop",streamjob="fraud",consumer_group="shop.fraud",topic="orders",partition="0"} 0"#),
            "{text}"
        );
    }

    #[test]
    fn forgetting_or_retargeting_a_job_drops_its_series() {
        let (monitor, metrics) = monitor();
        monitor.observe(target());
        monitor.record(&target(), &[lag(0, Some(5), 3)], Instant::now());
        assert!(metrics.render_for_tests().contains("streamjob=\"fraud\""));
        let mut other = target();
        other.topics = vec!["payments".into()];
        assert_eq!(
            monitor.observe(other.clone()),
            None,
            "new topics, no reading yet"
        );
        assert!(!metrics.render_for_tests().contains("streamjob=\"fraud\""));
        monitor.record(&target(), &[lag(0, Some(5), 3)], Instant::now());
        assert!(
            !metrics.render_for_tests().contains("streamjob=\"fraud\""),
            "a late answer for the old target is dropped"
        );
        monitor.record(&other, &[lag(0, Some(5), 3)], Instant::now());
        monitor.forget("shop", "fraud");
        assert!(!metrics.render_for_tests().contains("streamjob=\"fraud\""));
        assert_eq!(monitor.observe(other), None);
    }
}
