//! The capture's Kafka side: a transactional producer with a stable `transactional.id` (a
//! restarted capture fences its predecessor and aborts whatever it left open), and the offsets
//! topic read back with `read_committed`.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use trendstream_service::kafka::{KafkaCluster, QuietEof};

use super::envelope::KafkaRecord;
use super::offsets::CaptureOffset;

const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("Kafka: {context}: {source}")]
    Kafka {
        context: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("offsets topic {topic}: record at offset {offset} is not a capture offset: {reason}")]
    BadOffset {
        topic: String,
        offset: i64,
        reason: String,
    },
}

fn kafka(context: &'static str) -> impl FnOnce(KafkaError) -> SinkError {
    move |source| SinkError::Kafka { context, source }
}

/// Writes change records and the capture offset in Kafka transactions.
pub struct Sink {
    producer: BaseProducer,
    offsets_topic: String,
}

impl Sink {
    /// Creates the producer and fences any previous instance with the same id.
    pub fn connect(
        cluster: &KafkaCluster,
        transactional_id: &str,
        offsets_topic: &str,
    ) -> Result<Self, SinkError> {
        let producer: BaseProducer = cluster
            .client_config()
            .set("transactional.id", transactional_id)
            // The snapshot is one transaction; give it the broker's default maximum.
            .set("transaction.timeout.ms", "900000")
            // Debezium's topics are partitioned by the Java client's default: murmur2 of the key.
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "200000")
            .create()
            .map_err(kafka("creating the transactional producer"))?;
        producer.init_transactions(TIMEOUT).map_err(kafka(
            "initialising transactions (fences a previous capture)",
        ))?;
        Ok(Self {
            producer,
            offsets_topic: offsets_topic.to_owned(),
        })
    }

    pub fn begin(&self) -> Result<(), SinkError> {
        self.producer
            .begin_transaction()
            .map_err(kafka("beginning a transaction"))
    }

    pub fn send(&self, record: &KafkaRecord) -> Result<(), SinkError> {
        let mut out: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&record.topic);
        if let Some(key) = &record.key {
            out = out.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            out = out.payload(value.as_slice());
        }
        loop {
            match self.producer.send(out) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    out = back;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((err, _)) => return Err(kafka("producing a change record")(err)),
            }
        }
    }

    /// Writes `offset` and commits everything sent since [`Sink::begin`].
    pub fn commit(&self, offset: &CaptureOffset) -> Result<(), SinkError> {
        let value = serde_json::to_vec(offset).map_err(|e| SinkError::BadOffset {
            topic: self.offsets_topic.clone(),
            offset: -1,
            reason: e.to_string(),
        })?;
        self.send(&KafkaRecord {
            topic: self.offsets_topic.clone(),
            key: Some(offset.slot.clone().into_bytes()),
            value: Some(value),
        })?;
        self.producer
            .commit_transaction(TIMEOUT)
            .map_err(kafka("committing the transaction"))
    }

    /// Aborts the open transaction (after a failure mid-batch).
    pub fn abort(&self) {
        if let Err(err) = self.producer.abort_transaction(TIMEOUT) {
            tracing::warn!(%err, "aborting the Kafka transaction failed");
        }
    }
}

/// The last committed offset of `slot`, read from the start of the offsets topic to its end.
pub fn read_offset(
    cluster: &KafkaCluster,
    topic: &str,
    slot: &str,
) -> Result<Option<CaptureOffset>, SinkError> {
    let consumer: BaseConsumer<QuietEof> = cluster
        .client_config()
        .set("group.id", format!("pg-capture-offsets-{slot}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create_with_context(QuietEof::default())
        .map_err(kafka("creating the offsets reader"))?;
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, TIMEOUT)
        .map_err(kafka("reading the offsets topic's watermarks"))?;
    if high <= low {
        return Ok(None);
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(kafka("assigning the offsets topic"))?;
    consumer
        .assign(&assignment)
        .map_err(kafka("assigning the offsets topic"))?;
    let mut last = None;
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        if std::time::Instant::now() > deadline {
            return Err(SinkError::Kafka {
                context: "reading the offsets topic to its end",
                source: KafkaError::MessageConsumption(RDKafkaErrorCode::OperationTimedOut),
            });
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(last),
            Some(Err(err)) => return Err(kafka("reading the offsets topic")(err)),
            Some(Ok(message)) => {
                if message.key() != Some(slot.as_bytes()) {
                    continue;
                }
                let Some(payload) = message.payload() else {
                    last = None;
                    continue;
                };
                last = Some(
                    serde_json::from_slice(payload).map_err(|e| SinkError::BadOffset {
                        topic: topic.to_owned(),
                        offset: message.offset(),
                        reason: e.to_string(),
                    })?,
                );
            }
        }
    }
}
