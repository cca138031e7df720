//! Kafka helpers for tests: topics and records on the real broker.

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

pub const TIMEOUT: Duration = Duration::from_secs(30);

/// How many partitions `topic` has (0 when it does not exist), as the runtime counts them.
pub fn partition_count(bootstrap: &str, topic: &str) -> anyhow::Result<i32> {
    let client: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    Ok(trendstream_runtime::changelog::partition_count(
        &client, topic,
    )?)
}

/// Records whose partition is not murmur2 of their key (Kafka's Java default partitioner), as
/// "partition p, key k".
pub fn misplaced(records: &[Incoming], partitions: i32) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| {
            let key = r.key.as_deref()?;
            let want = trendstream_events::partitioning::partition_for(key.as_bytes(), partitions);
            (r.partition != want)
                .then(|| format!("partition {}, key {key} (want {want})", r.partition))
        })
        .collect()
}

/// Creates `topic` with `partitions` partitions; an existing topic is fine.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    create_topic_with(bootstrap, topic, partitions, &[]).await
}

/// Creates `topic` with `partitions` partitions and topic `config` (`max.message.bytes`, ...);
/// an existing topic is fine.
pub async fn create_topic_with(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    config: &[(&str, &str)],
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let new_topic = config.iter().fold(
        NewTopic::new(topic, partitions, TopicReplication::Fixed(1)),
        |new_topic, (key, value)| new_topic.set(key, value),
    );
    let results = admin
        .create_topics(
            &[new_topic],
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

/// One record to produce: key, value, and optionally a fixed partition.
pub struct Outgoing {
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub partition: Option<i32>,
}

/// Produces `records` in order (per partition) and waits until all are acknowledged.
pub fn produce_records(bootstrap: &str, topic: &str, records: &[Outgoing]) -> anyhow::Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    for record in records {
        let mut base: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).payload(&record.value);
        if let Some(key) = &record.key {
            base = base.key(key.as_str());
        }
        if let Some(partition) = record.partition {
            base = base.partition(partition);
        }
        let mut pending = base;
        loop {
            match producer.send(pending) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                    back,
                )) => {
                    pending = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((err, _)) => return Err(err.into()),
            }
        }
    }
    producer.flush(TIMEOUT)?;
    Ok(())
}

/// [`read_committed`] until nothing more came for 3 s.
pub fn read_until_quiet(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Incoming>> {
    read_committed(bootstrap, topic, expected, Duration::from_secs(3), timeout)
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

/// Reads `topic` from the beginning as a read_committed consumer until at least `expected`
/// records arrived and nothing more came for `quiet`, or `timeout` passed.
pub fn read_committed(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    quiet: Duration,
    timeout: Duration,
) -> anyhow::Result<Vec<Incoming>> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", crate::unique_name("reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()?;
    consumer.subscribe(&[topic])?;
    let started = std::time::Instant::now();
    let mut last = std::time::Instant::now();
    let mut out = Vec::new();
    while started.elapsed() < timeout {
        if out.len() >= expected && last.elapsed() >= quiet {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let headers = message
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Incoming {
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: message.payload().map(<[u8]>::to_vec),
                    headers,
                });
                last = std::time::Instant::now();
            }
            Some(Err(err)) => anyhow::bail!("reading {topic}: {err}"),
            None => {}
        }
    }
    Ok(out)
}
