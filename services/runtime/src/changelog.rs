//! Changelog topics: creating them, and replaying them into a partition's state.

use crate::state::{PartitionState, StateError};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};
use trendstream_service::kafka::{KafkaCluster, QuietEof};

const BATCH: usize = 1_000;
const RESTORE_TIMEOUT: Duration = Duration::from_secs(600);
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ChangelogError {
    #[error("changelog {topic}: {source}")]
    Kafka { topic: String, source: KafkaError },
    #[error("creating topic {topic}: {code}")]
    Create {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error(
        "changelog {topic} partition {partition}: no end after {0:?}",
        RESTORE_TIMEOUT
    )]
    Timeout { topic: String, partition: i32 },
    #[error(transparent)]
    State(#[from] StateError),
}

/// A topic the runtime creates when missing.
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub compacted: bool,
}

/// Creates the topics that do not exist yet (already existing is fine).
pub async fn ensure_topics(
    kafka: &KafkaCluster,
    replication: i32,
    topics: &[TopicSpec],
) -> Result<(), ChangelogError> {
    let admin: AdminClient<DefaultClientContext> =
        kafka
            .client_config()
            .create()
            .map_err(|source| ChangelogError::Kafka {
                topic: "(admin)".into(),
                source,
            })?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let topic = NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(replication));
            if t.compacted {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = admin
        .create_topics(new_topics.iter(), &options)
        .await
        .map_err(|source| ChangelogError::Kafka {
            topic: "(admin)".into(),
            source,
        })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(ChangelogError::Create { topic, code }),
        }
    }
    Ok(())
}

/// The partition count of `topic` (0 when it does not exist), asking the brokers.
pub fn topic_partitions(kafka: &KafkaCluster, topic: &str) -> Result<usize, ChangelogError> {
    let probe: BaseConsumer =
        kafka
            .client_config()
            .create()
            .map_err(|source| ChangelogError::Kafka {
                topic: topic.to_owned(),
                source,
            })?;
    partition_count(&probe, topic).map(|n| usize::try_from(n).unwrap_or(0))
}

/// The partition count of `topic`, from the broker.
pub fn partition_count<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
) -> Result<i32, ChangelogError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|source| ChangelogError::Kafka {
            topic: topic.to_owned(),
            source,
        })?;
    let count = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none())
        .map_or(0, |t| t.partitions().len());
    Ok(i32::try_from(count).unwrap_or(i32::MAX))
}

/// A consumer outside any group that reads committed records only.
fn restore_consumer(
    kafka: &KafkaCluster,
    topics: &[String],
) -> Result<BaseConsumer<QuietEof>, ChangelogError> {
    kafka
        .client_config()
        .set("group.id", "trendstream-restore")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .create_with_context(QuietEof::default())
        .map_err(|source| ChangelogError::Kafka {
            topic: topics.join(","),
            source,
        })
}

/// The end of partition `partition` of each topic: its last stable offset, where the next
/// committed record will be (a stateless fresh start begins its changelogs there).
pub fn end_offsets(
    kafka: &KafkaCluster,
    topics: &[String],
    partition: i32,
) -> Result<Vec<i64>, ChangelogError> {
    let consumer = restore_consumer(kafka, topics)?;
    topics
        .iter()
        .map(|topic| {
            watermarks(&consumer, topic, partition)
                .map(|(_, high)| high)
                .map_err(|source| ChangelogError::Kafka {
                    topic: topic.clone(),
                    source,
                })
        })
        .collect()
}

/// Replays each store's changelog into `state`, from the position the state recorded to the
/// end of the log (read_committed: only committed transactions). Returns records replayed.
pub fn replay(
    kafka: &KafkaCluster,
    state: &mut PartitionState,
    topics: &[String],
) -> Result<u64, ChangelogError> {
    let consumer = restore_consumer(kafka, topics)?;
    let partition = state.partition();
    let mut replayed = 0;
    for (index, topic) in topics.iter().enumerate() {
        let kafka = |source| ChangelogError::Kafka {
            topic: topic.clone(),
            source,
        };
        let (low, high) = watermarks(&consumer, topic, partition).map_err(kafka)?;
        let from = state.changelog_position(index)?.unwrap_or(low).max(low);
        if from >= high {
            continue;
        }
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(from))
            .map_err(kafka)?;
        consumer.assign(&assignment).map_err(kafka)?;
        let deadline = Instant::now() + RESTORE_TIMEOUT;
        let mut batch: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(BATCH);
        let mut next = from;
        loop {
            if Instant::now() > deadline {
                return Err(ChangelogError::Timeout {
                    topic: topic.clone(),
                    partition,
                });
            }
            match consumer.poll(Duration::from_millis(200)) {
                None => continue,
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(err)) => return Err(kafka(err)),
                Some(Ok(message)) => {
                    let Some(key) = message.key() else { continue };
                    batch.push((key.to_vec(), message.payload().map(<[u8]>::to_vec)));
                    next = message.offset() + 1;
                    replayed += 1;
                    if batch.len() >= BATCH {
                        state.restore_batch(index, &batch, next)?;
                        batch.clear();
                    }
                }
            }
        }
        // The end of the log (transaction markers included) is where the next write goes.
        let end = consumer
            .position()
            .ok()
            .and_then(|tpl| {
                tpl.find_partition(topic, partition)
                    .and_then(|p| p.offset().to_raw())
            })
            .unwrap_or(next)
            .max(next);
        state.restore_batch(index, &batch, end)?;
    }
    if let Err(err) = consumer.unassign() {
        tracing::debug!(%err, "unassigning the restore consumer");
    }
    Ok(replayed)
}

/// The low and high offsets of a changelog partition. A topic created a moment ago may have no
/// leader yet, so leadership errors are retried for a while before they count.
fn watermarks(
    consumer: &BaseConsumer<QuietEof>,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), KafkaError> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    loop {
        match consumer.fetch_watermarks(topic, partition, REQUEST_TIMEOUT) {
            Err(err) if is_leadership_error(&err) && Instant::now() < deadline => {
                tracing::debug!(topic, partition, %err, "changelog partition not ready yet; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            result => return result,
        }
    }
}

fn is_leadership_error(err: &KafkaError) -> bool {
    matches!(
        err.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownPartition
        )
    )
}

/// True when the error means another producer with our transactional id took over.
pub fn is_fenced(err: &KafkaError) -> bool {
    match err {
        KafkaError::Transaction(e) => e.is_fatal() || e.code() == RDKafkaErrorCode::ProducerFenced,
        _ => false,
    }
}
