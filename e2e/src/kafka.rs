//! Kafka helpers for tests: topics and records on the real broker.

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Creates `topic` with `partitions` partitions; an existing topic is fine.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("creating topic {name}: {code}"),
        }
    }
    Ok(())
}

/// Produces `count` keyed records to `topic` and waits until all are acknowledged.
pub fn produce(bootstrap: &str, topic: &str, count: usize) -> anyhow::Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()?;
    for i in 0..count {
        let key = format!("user-{}", i % 97);
        let value = format!("{{\"n\":{i}}}");
        producer
            .send(BaseRecord::to(topic).key(&key).payload(&value))
            .map_err(|(err, _)| err)?;
    }
    producer.flush(TIMEOUT)?;
    Ok(())
}
