//! What the operator asks the Kafka broker: how many partitions a job's input topics have, and
//! how far its consumer group lags behind them.
//!
//! librdkafka calls block, so they run on the blocking pool, each with a timeout, at most a
//! few at once (every query opens a short-lived client: one per consumer group would keep
//! threads and buffers alive for every job the operator manages). The clients read
//! `read_committed`, so a partition's end is its last stable offset.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use trendstream_service::kafka::KafkaCluster;

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

/// One input partition's lag (see [`crate::lag`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset; `None` when it has committed none.
    pub committed: Option<i64>,
    pub lag: i64,
}

/// Queries the broker, or (for tests and air-gapped clusters) answers from fixed values.
#[derive(Clone)]
pub enum KafkaInspector {
    Broker {
        timeout: Duration,
        permits: Arc<Semaphore>,
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
        }
    }

    /// The partition count of `topics` (the largest, should they differ).
    pub async fn partitions(
        &self,
        kafka: &KafkaCluster,
        topics: &[String],
    ) -> Result<i32, KafkaError> {
        match self {
            Self::Fixed { partitions, .. } => topics
                .iter()
                .map(|t| {
                    partitions
                        .get(t)
                        .copied()
                        .ok_or_else(|| KafkaError::NoSuchTopic {
                            bootstrap: kafka.to_string(),
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
                let (kafka, topics, timeout) = (kafka.clone(), topics.to_vec(), *timeout);
                tokio::task::spawn_blocking(move || partitions_blocking(&kafka, &topics, timeout))
                    .await
                    .map_err(|e| KafkaError::Join(e.to_string()))?
            }
        }
    }

    /// The lag of `group` on every partition of `topics`. A partition with no committed
    /// offset counts from its start.
    pub async fn partition_lags(
        &self,
        kafka: &KafkaCluster,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<PartitionLag>, KafkaError> {
        match self {
            Self::Fixed { lag, .. } => Ok(lag
                .iter()
                .map(|lag| PartitionLag {
                    topic: topics.first().cloned().unwrap_or_default(),
                    partition: 0,
                    committed: None,
                    lag: *lag,
                })
                .collect()),
            Self::Broker { timeout, permits } => {
                let _permit = permits
                    .acquire()
                    .await
                    .map_err(|e| KafkaError::Join(e.to_string()))?;
                let (kafka, group, topics, timeout) =
                    (kafka.clone(), group.to_owned(), topics.to_vec(), *timeout);
                tokio::task::spawn_blocking(move || lag_blocking(&kafka, &group, &topics, timeout))
                    .await
                    .map_err(|e| KafkaError::Join(e.to_string()))?
            }
        }
    }
}

fn consumer(kafka: &KafkaCluster, group: &str) -> Result<BaseConsumer, KafkaError> {
    kafka
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("client.id", "trendstream-operator")
        // End offsets are last stable offsets: what a read_committed consumer can read.
        .set("isolation.level", "read_committed")
        .set("log_level", "3")
        .create()
        .map_err(|source| KafkaError::Client {
            bootstrap: kafka.to_string(),
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
    kafka: &KafkaCluster,
    topics: &[String],
    timeout: Duration,
) -> Result<i32, KafkaError> {
    let consumer = consumer(kafka, "trendstream-operator")?;
    let bootstrap = &kafka.to_string();
    let mut max = 0;
    for topic in topics {
        max = max.max(topic_partitions(&consumer, bootstrap, topic, timeout)?);
    }
    Ok(max)
}

fn lag_blocking(
    kafka: &KafkaCluster,
    group: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<PartitionLag>, KafkaError> {
    let bootstrap = &kafka.to_string();
    let client_error = |source| KafkaError::Client {
        bootstrap: bootstrap.to_owned(),
        source,
    };
    let consumer = consumer(kafka, group)?;
    let mut list = TopicPartitionList::new();
    for topic in topics {
        for partition in 0..topic_partitions(&consumer, bootstrap, topic, timeout)? {
            list.add_partition(topic, partition);
        }
    }
    let committed = consumer
        .committed_offsets(list, timeout)
        .map_err(client_error)?;
    let mut lags = Vec::new();
    for element in committed.elements() {
        let (low, end) = consumer
            .fetch_watermarks(element.topic(), element.partition(), timeout)
            .map_err(client_error)?;
        let committed = match element.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        };
        let position = committed.map_or(low, |offset| offset.max(low));
        lags.push(PartitionLag {
            topic: element.topic().to_owned(),
            partition: element.partition(),
            committed,
            lag: (end - position).max(0),
        });
    }
    Ok(lags)
}
