//! What the operator asks the Kafka broker: how many partitions a job's input topics have, and
//! how far its consumer group lags behind them.
//!
//! librdkafka calls block, so they run on the blocking pool, each with a timeout, at most a
//! few at once (every query opens a short-lived client: one per consumer group would keep
//! threads and buffers alive for every job the operator manages).

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka at {bootstrap}: {source}")]
    Client {
        bootstrap: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("kafka at {bootstrap}: topic {topic} does not exist")]
    NoSuchTopic { bootstrap: String, topic: String },
    #[error("kafka query did not finish: {0}")]
    Join(String),
}

/// Lag is reported in status, not acted upon (the HPA reads its own metric), so an answer
/// this old is good enough, and a fleet of jobs costs one broker query per group per interval.
const LAG_TTL: Duration = Duration::from_secs(15);

type LagCache = Arc<Mutex<HashMap<(String, String), (Instant, i64)>>>;
type Refreshing = Arc<Mutex<HashSet<(String, String)>>>;

/// Queries the broker, or (for tests and air-gapped clusters) answers from fixed values.
#[derive(Clone)]
pub enum KafkaInspector {
    Broker {
        timeout: Duration,
        permits: Arc<Semaphore>,
        lag_cache: LagCache,
        /// Groups whose lag is being fetched in the background.
        refreshing: Refreshing,
    },
    Fixed {
        partitions: BTreeMap<String, i32>,
        lag: Option<i64>,
    },
}

impl KafkaInspector {
    pub fn broker(timeout: Duration) -> Self {
        Self::Broker {
            timeout,
            permits: Arc::new(Semaphore::new(4)),
            lag_cache: LagCache::default(),
            refreshing: Refreshing::default(),
        }
    }

    /// The partition count of `topics` (the largest, should they differ).
    pub async fn partitions(&self, bootstrap: &str, topics: &[String]) -> Result<i32, KafkaError> {
        match self {
            Self::Fixed { partitions, .. } => topics
                .iter()
                .map(|t| {
                    partitions
                        .get(t)
                        .copied()
                        .ok_or_else(|| KafkaError::NoSuchTopic {
                            bootstrap: bootstrap.to_owned(),
                            topic: t.clone(),
                        })
                })
                .try_fold(0, |max, count| count.map(|c| max.max(c))),
            Self::Broker {
                timeout, permits, ..
            } => {
                let _permit = permits
                    .acquire()
                    .await
                    .map_err(|e| KafkaError::Join(e.to_string()))?;
                let (bootstrap, topics, timeout) =
                    (bootstrap.to_owned(), topics.to_vec(), *timeout);
                tokio::task::spawn_blocking(move || {
                    partitions_blocking(&bootstrap, &topics, timeout)
                })
                .await
                .map_err(|e| KafkaError::Join(e.to_string()))?
            }
        }
    }

    /// The last known lag of `group`, without waiting for the broker: a stale or missing value
    /// is fetched in the background, so a reconciliation never queues behind broker queries
    /// (with hundreds of jobs, that queue would hold every status update back).
    pub fn lag_snapshot(&self, bootstrap: &str, group: &str, topics: &[String]) -> Option<i64> {
        match self {
            Self::Fixed { lag, .. } => *lag,
            Self::Broker {
                lag_cache,
                refreshing,
                ..
            } => {
                let key = (bootstrap.to_owned(), group.to_owned());
                let cached = lag_cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&key)
                    .copied();
                let stale = cached.is_none_or(|(at, _)| at.elapsed() >= LAG_TTL);
                let start = stale
                    && refreshing
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key.clone());
                if start {
                    let inspector = self.clone();
                    let refreshing = refreshing.clone();
                    let topics = topics.to_vec();
                    tokio::spawn(async move {
                        if let Err(err) = inspector.lag(&key.0, &key.1, &topics).await {
                            tracing::debug!(group = %key.1, %err, "consumer lag unavailable");
                        }
                        refreshing
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&key);
                    });
                }
                cached.map(|(_, lag)| lag)
            }
        }
    }

    /// Records between the group's committed offsets and the end of `topics`, summed. A
    /// partition with no committed offset counts from its start.
    pub async fn lag(
        &self,
        bootstrap: &str,
        group: &str,
        topics: &[String],
    ) -> Result<i64, KafkaError> {
        match self {
            Self::Fixed { lag, .. } => Ok(lag.unwrap_or(0)),
            Self::Broker {
                timeout,
                permits,
                lag_cache,
                ..
            } => {
                let key = (bootstrap.to_owned(), group.to_owned());
                let fresh = |cache: &LagCache| {
                    let cache = cache.lock().unwrap_or_else(|p| p.into_inner());
                    cache
                        .get(&key)
                        .filter(|(at, _)| at.elapsed() < LAG_TTL)
                        .map(|(_, lag)| *lag)
                };
                if let Some(lag) = fresh(lag_cache) {
                    return Ok(lag);
                }
                let _permit = permits
                    .acquire()
                    .await
                    .map_err(|e| KafkaError::Join(e.to_string()))?;
                // Another reconciliation may have refreshed it while this one waited.
                if let Some(lag) = fresh(lag_cache) {
                    return Ok(lag);
                }
                let (bootstrap, group, topics, timeout) = (
                    bootstrap.to_owned(),
                    group.to_owned(),
                    topics.to_vec(),
                    *timeout,
                );
                let lag = tokio::task::spawn_blocking(move || {
                    lag_blocking(&bootstrap, &group, &topics, timeout)
                })
                .await
                .map_err(|e| KafkaError::Join(e.to_string()))??;
                lag_cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, (Instant::now(), lag));
                Ok(lag)
            }
        }
    }
}

fn consumer(bootstrap: &str, group: &str) -> Result<BaseConsumer, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("client.id", "trendstream-operator")
        .set("log_level", "3")
        .create()
        .map_err(|source| KafkaError::Client {
            bootstrap: bootstrap.to_owned(),
            source,
        })
}

fn topic_partitions(
    consumer: &BaseConsumer,
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> Result<i32, KafkaError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|source| KafkaError::Client {
            bootstrap: bootstrap.to_owned(),
            source,
        })?;
    let count = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    if count == 0 {
        return Err(KafkaError::NoSuchTopic {
            bootstrap: bootstrap.to_owned(),
            topic: topic.to_owned(),
        });
    }
    Ok(i32::try_from(count).unwrap_or(i32::MAX))
}

fn partitions_blocking(
    bootstrap: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<i32, KafkaError> {
    let consumer = consumer(bootstrap, "trendstream-operator")?;
    let mut max = 0;
    for topic in topics {
        max = max.max(topic_partitions(&consumer, bootstrap, topic, timeout)?);
    }
    Ok(max)
}

fn lag_blocking(
    bootstrap: &str,
    group: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<i64, KafkaError> {
    let client_error = |source| KafkaError::Client {
        bootstrap: bootstrap.to_owned(),
        source,
    };
    let consumer = consumer(bootstrap, group)?;
    let mut list = TopicPartitionList::new();
    for topic in topics {
        for partition in 0..topic_partitions(&consumer, bootstrap, topic, timeout)? {
            list.add_partition(topic, partition);
        }
    }
    let committed = consumer
        .committed_offsets(list, timeout)
        .map_err(client_error)?;
    let mut lag = 0i64;
    for element in committed.elements() {
        let (low, high) = consumer
            .fetch_watermarks(element.topic(), element.partition(), timeout)
            .map_err(client_error)?;
        let position = match element.offset() {
            Offset::Offset(offset) => offset.max(low),
            _ => low,
        };
        lag += (high - position).max(0);
    }
    Ok(lag)
}
