//! The Kafka writer: an idempotent producer (acks=all, ordered retries) that sends every record
//! to the partition the generator computed, and the broker metadata lookup of partition counts.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use thiserror::Error;

use trendstream_service::kafka::{KafkaCluster, KafkaUnreachable};

use crate::record::Record;

/// Kafka went wrong.
#[derive(Debug, Error)]
pub enum KafkaSinkError {
    #[error(transparent)]
    Unreachable(#[from] KafkaUnreachable),
    #[error("cannot create the Kafka producer for {bootstrap}: {source}")]
    Create {
        bootstrap: String,
        #[source]
        source: Box<KafkaError>,
    },
    #[error("cannot read the metadata of topic {topic} from {bootstrap}: {source}")]
    Metadata {
        topic: String,
        bootstrap: String,
        #[source]
        source: Box<KafkaError>,
    },
    #[error(
        "topic {topic} does not exist on {bootstrap} ({reason}); create it first (loadgen does not create topics)"
    )]
    MissingTopic {
        topic: String,
        bootstrap: String,
        reason: String,
    },
    #[error("producing to {topic} partition {partition}: {source}")]
    Send {
        topic: String,
        partition: i32,
        #[source]
        source: Box<KafkaError>,
    },
    #[error("{failed} record(s) were not delivered; first error: {first}")]
    Delivery { failed: u64, first: String },
    #[error("flushing the producer: {0}")]
    Flush(#[source] Box<KafkaError>),
}

/// Counts delivery reports.
#[derive(Default)]
pub struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((err, message)) => {
                use rdkafka::Message;
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| {
                        format!(
                            "{} partition {}: {err}",
                            message.topic(),
                            message.partition()
                        )
                    });
                }
            }
        }
    }
}

/// The producer.
pub struct KafkaSink {
    bootstrap: String,
    producer: ThreadedProducer<Deliveries>,
}

impl KafkaSink {
    /// An idempotent producer for `kafka`, once its brokers answered (a wrong password or
    /// certificate is reported with its reason instead of as a timeout later).
    pub fn connect(kafka: &KafkaCluster, timeout: Duration) -> Result<Self, KafkaSinkError> {
        kafka.check_reachable(timeout)?;
        let bootstrap = kafka.to_string();
        let producer = kafka
            .client_config()
            .set("client.id", "loadgen")
            // A metadata lookup must not create a missing topic with the broker's defaults.
            .set("allow.auto.create.topics", "false")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "10")
            .set("batch.size", "1000000")
            .set("compression.type", "lz4")
            .set("queue.buffering.max.messages", "1000000")
            .create_with_context(Deliveries::default())
            .map_err(|source| KafkaSinkError::Create {
                bootstrap: bootstrap.clone(),
                source: Box::new(source),
            })?;
        Ok(Self {
            bootstrap,
            producer,
        })
    }

    /// The partition count of `topic`, from the broker's metadata. A topic created a moment ago
    /// may not be in every broker's metadata yet, so a missing topic is asked for again for a
    /// few seconds before it is reported.
    pub fn partition_count(&self, topic: &str, timeout: Duration) -> Result<i32, KafkaSinkError> {
        let deadline = std::time::Instant::now() + timeout.min(Duration::from_secs(5));
        loop {
            match self.try_partition_count(topic, timeout) {
                Err(KafkaSinkError::MissingTopic { .. })
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(200));
                }
                result => return result,
            }
        }
    }

    fn try_partition_count(&self, topic: &str, timeout: Duration) -> Result<i32, KafkaSinkError> {
        let metadata = self
            .producer
            .client()
            .fetch_metadata(Some(topic), timeout)
            .map_err(|source| KafkaSinkError::Metadata {
                topic: topic.to_owned(),
                bootstrap: self.bootstrap.clone(),
                source: Box::new(source),
            })?;
        let missing = |reason: String| KafkaSinkError::MissingTopic {
            topic: topic.to_owned(),
            bootstrap: self.bootstrap.clone(),
            reason,
        };
        let entry = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| missing("not in the metadata".to_owned()))?;
        if let Some(err) = entry.error() {
            return Err(missing(RDKafkaErrorCode::from(err).to_string()));
        }
        match i32::try_from(entry.partitions().len()) {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(missing("no partitions".to_owned())),
        }
    }

    /// Enqueues `record` for `topic` at its partition, waiting while the local queue is full.
    pub fn send(&self, topic: &str, record: &Record) -> Result<(), KafkaSinkError> {
        self.check_deliveries()?;
        let mut pending: BaseRecord<'_, str, str> = BaseRecord::to(topic)
            .key(record.key.as_str())
            .payload(record.value.as_str())
            .partition(record.partition);
        loop {
            match self.producer.send(pending) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    pending = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((source, _)) => {
                    return Err(KafkaSinkError::Send {
                        topic: topic.to_owned(),
                        partition: record.partition,
                        source: Box::new(source),
                    });
                }
            }
        }
    }

    fn check_deliveries(&self) -> Result<(), KafkaSinkError> {
        let context = self.producer.context();
        let failed = context.failed.load(Ordering::Relaxed);
        if failed == 0 {
            return Ok(());
        }
        let first = context
            .first_error
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_default();
        Err(KafkaSinkError::Delivery { failed, first })
    }

    /// Waits until every record is acknowledged; returns how many were delivered.
    pub fn finish(self, timeout: Duration) -> Result<u64, KafkaSinkError> {
        self.producer
            .flush(timeout)
            .map_err(|e| KafkaSinkError::Flush(Box::new(e)))?;
        self.check_deliveries()?;
        Ok(self.producer.context().delivered.load(Ordering::Relaxed))
    }
}
