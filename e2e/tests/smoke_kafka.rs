//! Kafka smoke test: transactions on the real broker (Apache Kafka in KRaft mode).
//!
//! A committed batch must be visible to a read_committed consumer and an aborted one must not,
//! while a read_uncommitted consumer sees both: that proves the broker really filters aborted
//! records (Kafka-compatible brokers that accept transactions without hiding aborted records,
//! such as Tansu, fail here).

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::time::{Duration, Instant};
use trendstream_e2e::kafka::{TIMEOUT, create_topic};
use trendstream_e2e::{TestEnv, unique_name};

fn send_batch(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    label: &str,
) -> anyhow::Result<()> {
    producer.begin_transaction()?;
    for i in 0..10 {
        let key = format!("user-{i}");
        let value = format!("{label}-{i}");
        producer
            .send(BaseRecord::to(topic).key(&key).payload(&value))
            .map_err(|(err, _)| err)?;
    }
    producer.flush(TIMEOUT)?;
    Ok(())
}

/// Every value on `topic` as seen with the given isolation level, read until the end.
fn read_all(
    bootstrap: &str,
    topic: &str,
    isolation: &str,
    expected: usize,
) -> anyhow::Result<Vec<String>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique_name("smoke-reader"))
        .set("isolation.level", isolation)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut values = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    // Keep polling a little past the expected count, so an extra (aborted) record would show.
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(message) => {
                let message = message?;
                values.push(
                    String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
                );
                quiet_since = Instant::now();
            }
            None if values.len() >= expected && quiet_since.elapsed() > Duration::from_secs(2) => {
                break;
            }
            None => {}
        }
    }
    values.sort();
    Ok(values)
}

#[tokio::test(flavor = "multi_thread")]
async fn read_committed_sees_the_committed_batch_and_not_the_aborted_one() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?;
    println!("Apache Kafka broker at {bootstrap}");
    let topic = unique_name("smoke-tx");
    create_topic(bootstrap, &topic, 3).await?;

    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", unique_name("smoke-tx-producer"))
        .set("enable.idempotence", "true")
        .create()?;
    producer.init_transactions(TIMEOUT)?;
    send_batch(&producer, &topic, "committed")?;
    producer.commit_transaction(TIMEOUT)?;
    send_batch(&producer, &topic, "aborted")?;
    producer.abort_transaction(TIMEOUT)?;

    let mut expected: Vec<String> = (0..10).map(|i| format!("committed-{i}")).collect();
    expected.sort();
    let committed = read_all(bootstrap, &topic, "read_committed", 10)?;
    assert_eq!(
        committed, expected,
        "read_committed must see exactly the committed batch"
    );

    let uncommitted = read_all(bootstrap, &topic, "read_uncommitted", 20)?;
    assert_eq!(
        uncommitted.len(),
        20,
        "the aborted batch is in the log: {uncommitted:?}"
    );
    assert_eq!(
        uncommitted
            .iter()
            .filter(|v| v.starts_with("aborted-"))
            .count(),
        10
    );
    println!(
        "read_committed saw {} records, read_uncommitted {}",
        committed.len(),
        uncommitted.len()
    );
    Ok(())
}
