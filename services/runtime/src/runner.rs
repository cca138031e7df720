//! [`run`]: wires a processor to Kafka, state, checkpoints, Redis and the ops endpoint, and runs
//! the processing loop until SIGTERM (or a fatal error).

use crate::changelog::{self, TopicSpec};
use crate::checkpoints::{CheckpointSettings, Checkpointer};
use crate::config::RuntimeOptions;
use crate::engine::{
    Core, DeliveryTracker, EngineError, ProducerSlot, RebalanceHandler, Services, TxnProducer,
};
use crate::metrics::RuntimeMetrics;
use crate::processor::Processor;
use crate::redis_sink::RedisSink;
use crate::rejection::MAX_RECORD_BYTES;
use crate::state::RUNTIME_STORE;
use anyhow::Context as _;
use prometheus_client::registry::Registry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use trendstream_checkpoint::GcsConfig;
use trendstream_service::kafka::QuietEof;
use trendstream_service::ops::{self, Liveness, Readiness};

const GAUGE_INTERVAL: Duration = Duration::from_secs(2);
const IDLE_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// What the shutdown keeps back from the checkpoint uploads for leaving the group.
const LEAVE_GROUP_RESERVE: Duration = Duration::from_secs(5);

/// The body of a processor binary's `main`: validates the runtime options, stops there with
/// `--check-config`, else runs `processor`; exit code 2 for a bad configuration, 1 for a failure.
pub fn run_service<P: Processor>(
    check_config: bool,
    options: RuntimeOptions,
    http_addr: SocketAddr,
    processor: P,
) -> std::process::ExitCode {
    let service = processor.service();
    if let Err(err) = options.validate() {
        eprintln!("{service}: {err}");
        return std::process::ExitCode::from(2);
    }
    if check_config {
        return std::process::ExitCode::SUCCESS;
    }
    match run(options, http_addr, processor) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "{service} failed");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs `processor` until SIGTERM/SIGINT. Returns an error (and the process should exit
/// non-zero, so Kubernetes restarts it) on anything the runtime cannot recover from.
pub fn run<P: Processor>(
    options: RuntimeOptions,
    http_addr: SocketAddr,
    processor: P,
) -> anyhow::Result<()> {
    options.validate()?;
    let service = processor.service();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;

    let mut registry = Registry::with_prefix("trendstream");
    let metrics = Arc::new(RuntimeMetrics::register(&mut registry));
    let readiness = Readiness::new("starting");
    let liveness = Liveness::new(options.stuck_timeout);
    // When SIGTERM came; the shutdown's bound counts from then.
    let stop = Arc::new(OnceLock::new());
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    {
        let router =
            ops::router_with_liveness(Arc::new(registry), readiness.clone(), liveness.clone());
        let mut rx = shutdown_rx.clone();
        let listener = tokio
            .block_on(tokio::net::TcpListener::bind(http_addr))
            .with_context(|| format!("binding the ops endpoint on {http_addr}"))?;
        tracing::info!(addr = %listener.local_addr()?, "serving /metrics and /health");
        tokio.spawn(async move {
            let shutdown = async move {
                let _ = rx.wait_for(|stop| *stop).await;
            };
            if let Err(err) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%err, "ops endpoint failed");
            }
        });
    }
    {
        let stop = stop.clone();
        let timeout = options.shutdown_timeout;
        tokio.spawn(async move {
            trendstream_service::signal::terminated().await;
            tracing::info!(?timeout, "shutdown requested; finishing the batch");
            let _ = stop.set(Instant::now());
            // The bound, whatever holds the shutdown up (a commit, an upload, a long restore).
            tokio::time::sleep(timeout).await;
            tracing::warn!(
                ?timeout,
                "shutdown did not finish within SHUTDOWN_TIMEOUT; exiting now (what was not \
                 committed is replayed by the partitions' next owner)"
            );
            std::process::exit(1);
        });
    }

    // One metadata client for the start-up checks.
    let probe = metadata_client(&options)?;
    let partitions = input_partitions(&probe, &options)?;
    let mut stores: Vec<String> = processor.stores().iter().map(|s| (*s).to_owned()).collect();
    stores.push(RUNTIME_STORE.to_owned());
    let changelogs: Vec<String> = stores.iter().map(|s| options.changelog_topic(s)).collect();
    let mut topics: Vec<TopicSpec> = changelogs
        .iter()
        .map(|name| TopicSpec {
            name: name.clone(),
            partitions,
            compacted: true,
        })
        .collect();
    let internal = processor.internal_topics();
    for name in [
        options.dlq_topic(service),
        options.late_topic.clone(),
        options.output_topic.clone(),
    ]
    .into_iter()
    .chain(internal.iter().cloned())
    {
        topics.push(TopicSpec {
            name,
            partitions,
            compacted: false,
        });
    }
    tokio
        .block_on(changelog::ensure_topics(
            &options.kafka(),
            options.changelog_replication_factor,
            &topics,
        ))
        .context("creating changelog, dead-letter and late topics")?;
    let per_partition: Vec<String> = changelogs.iter().chain(&internal).cloned().collect();
    check_state_topics(&probe, &per_partition, partitions)?;
    drop(probe);

    let producer = transactional_producer(&options, &changelogs)
        .context("creating the transactional producer")?;
    producer
        .init_transactions(Duration::from_secs(60))
        .context("initialising transactions (fences any previous instance of this replica)")?;
    let factory = {
        let (options, changelogs) = (options.clone(), changelogs.clone());
        Box::new(move || transactional_producer(&options, &changelogs))
    };
    let slot = ProducerSlot::new(producer, factory, metrics.producer_recreations.clone());

    let redis = options
        .redis_url
        .as_deref()
        .map(|url| {
            let client = options.redis_auth.client(url)?;
            RedisSink::new(client, options.redis_timeout, options.fence_prefix())
                .context("starting the Redis writer")
        })
        .transpose()?;
    // The operator sets GCS_BUCKET="" when the job has no bucket.
    let gcs = options
        .gcs_bucket
        .clone()
        .filter(|b| !b.is_empty())
        .map(|bucket| GcsConfig {
            bucket,
            prefix: options.gcs_prefix.clone(),
            endpoint: options.gcs_endpoint.clone(),
        });
    let checkpointer = Checkpointer::new(
        CheckpointSettings {
            state_dir: options.state_dir.clone(),
            kafka: options.kafka(),
            group: options.consumer_group.clone(),
            interval: options.checkpoint_interval,
            retained: options.checkpoint_retained,
            gcs,
        },
        tokio.handle().clone(),
        metrics.clone(),
    )
    .context("GCS checkpoint settings")?;

    let core = Arc::new(Mutex::new(Core::new(
        processor,
        options.clone(),
        slot,
        changelogs,
        Services {
            redis,
            checkpointer,
            metrics: metrics.clone(),
            readiness: readiness.clone(),
            liveness,
        },
    )));
    let failure = Arc::new(Mutex::new(None));
    let topics: Vec<&str> = options
        .input_topics
        .iter()
        .chain(&internal)
        .map(String::as_str)
        .collect();
    let consumer: BaseConsumer<RebalanceHandler<P>> = options
        .kafka()
        .client_config()
        .set("group.id", &options.consumer_group)
        .set("group.instance.id", &options.instance_id)
        .set(
            "partition.assignment.strategy",
            assignment_strategy(topics.len()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set(
            "session.timeout.ms",
            options.session_timeout.as_millis().to_string(),
        )
        .set("max.poll.interval.ms", "600000")
        .set("statistics.interval.ms", "2000")
        .create_with_context(RebalanceHandler {
            core: core.clone(),
            failure: failure.clone(),
            metrics: metrics.clone(),
        })
        .context("creating the consumer")?;
    consumer
        .subscribe(&topics)
        .context("subscribing to the input topics")?;
    readiness.set_not_ready("waiting for a partition assignment");
    tracing::info!(service, group = %options.consumer_group, instance = %options.instance_id, "processing");

    let result = process(
        &consumer,
        &core,
        &failure,
        &stop,
        &metrics,
        options.producer_max_in_flight,
    );
    let _ = shutdown_tx.send(true);
    match result {
        Ok(()) => {
            let signalled = stop.get().copied().unwrap_or_else(Instant::now);
            shutdown(&consumer, &core, signalled + options.shutdown_timeout);
            tracing::info!("stopped cleanly");
            Ok(())
        }
        Err(err) => {
            readiness.set_not_ready(err.to_string());
            Err(anyhow::Error::new(err).context("processing stopped"))
        }
    }
}

/// The transactional producer, not yet initialised. Delivery reports are served on its own
/// thread: aborting a transaction waits for the reports of the records it purges.
fn transactional_producer(
    options: &RuntimeOptions,
    changelogs: &[String],
) -> Result<TxnProducer, KafkaError> {
    options
        .kafka()
        .client_config()
        .set("transactional.id", options.transactional_id())
        .set(
            "transaction.timeout.ms",
            options.transaction_timeout.as_millis().to_string(),
        )
        .set("message.max.bytes", MAX_RECORD_BYTES.to_string())
        // Keyed outputs land where a Java producer would put them (librdkafka's default is
        // CRC32): consumers co-partitioned with other Kafka clients' topics rely on it.
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "200000")
        .create_with_context(DeliveryTracker::new(changelogs.iter().cloned()))
}

/// A task is a partition number across all input topics, so partition N of every input must
/// land on the same replica. The range assignor guarantees that for co-partitioned topics (same
/// partition count, same members); cooperative-sticky does not, but moves fewer partitions per
/// rebalance, so it is used when there is only one input topic.
fn assignment_strategy(input_topics: usize) -> &'static str {
    if input_topics > 1 {
        "range"
    } else {
        "cooperative-sticky"
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The loop. The core's lock is never held across `poll`, whose rebalance callbacks take it.
fn process<P: Processor>(
    consumer: &BaseConsumer<RebalanceHandler<P>>,
    core: &Mutex<Core<P>>,
    failure: &Mutex<Option<EngineError>>,
    stop: &OnceLock<Instant>,
    metrics: &RuntimeMetrics,
    max_in_flight: i32,
) -> Result<(), EngineError> {
    // Input is paused while the producer has too much in flight (with hysteresis) or while
    // recovery holds it after a failed transaction.
    let mut paused = false;
    let mut pressure = false;
    let mut last_gauges = Instant::now();
    let mut last_idle_check = Instant::now();
    while stop.get().is_none() {
        let message = consumer.poll(Duration::from_millis(20));
        if let Some(err) = lock(failure).take() {
            return Err(err);
        }
        let mut core = lock(core);
        match message {
            Some(Ok(message)) => core.handle(&message)?,
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(err)) => tracing::warn!(%err, "consumer error"),
        }
        // Idleness is measured in seconds; checking it per record would only cost time.
        if last_idle_check.elapsed() >= IDLE_CHECK_INTERVAL {
            core.advance_idle()?;
            // Caught up: the markers after the last records are committed over too.
            core.step_over_markers(consumer)?;
            last_idle_check = Instant::now();
        }
        // Kafka's commit runs on a thread while records are processed into the next
        // transaction; completing it checkpoints when due and begins the next one.
        if core.commit_in_flight() {
            let wait = core.commit_backlogged();
            core.finish_commit(wait)?;
        } else if core.commit_due() {
            core.step_over_markers(consumer)?;
            let group = consumer.group_metadata();
            core.start_commit(group.as_ref())?;
        }
        // After a failed transaction: a pending abort, the end of the backoff (then the
        // consumer is sought back to the committed offsets).
        core.tick(consumer)?;

        let in_flight = core.in_flight();
        pressure = in_flight
            > if pressure {
                max_in_flight / 2
            } else {
                max_in_flight
            };
        let hold = pressure || core.holding();
        if hold != paused
            && let Ok(assignment) = consumer.assignment()
        {
            let result = if hold {
                consumer.pause(&assignment)
            } else {
                consumer.resume(&assignment)
            };
            if let Err(err) = result {
                tracing::debug!(%err, hold, "pausing or resuming input");
            }
            paused = hold;
            metrics.paused.set(i64::from(hold));
            tracing::debug!(in_flight, hold, "input paused or resumed");
        }
        if last_gauges.elapsed() >= GAUGE_INTERVAL {
            core.refresh_gauges();
            last_gauges = Instant::now();
        }
    }
    Ok(())
}

/// SIGTERM: commit what was processed, checkpoint, and close the consumer.
fn shutdown<P: Processor>(
    consumer: &BaseConsumer<RebalanceHandler<P>>,
    core: &Mutex<Core<P>>,
    deadline: Instant,
) {
    {
        let mut core = lock(core);
        let group = consumer.group_metadata();
        match core.commit(group.as_ref()) {
            Ok(true) => core.checkpoint_if_due(true),
            Ok(false) => tracing::warn!("the last transaction was aborted; it will be replayed"),
            Err(err) => tracing::error!(%err, "final commit failed; it will be replayed"),
        }
    }
    let uploads = deadline
        .saturating_duration_since(Instant::now())
        .saturating_sub(LEAVE_GROUP_RESERVE);
    lock(core).wait_for_uploads(uploads);
    consumer.unsubscribe();
}

/// The start-up checks' metadata client, once the brokers answered it: a wrong password or
/// certificate ends the start with the reason, not a retry loop.
fn metadata_client(options: &RuntimeOptions) -> anyhow::Result<BaseConsumer<QuietEof>> {
    Ok(options
        .kafka()
        .metadata_client(changelog::REQUEST_TIMEOUT)?)
}

/// The partition count every input topic shares: state is kept per partition number, so all
/// inputs must be co-partitioned (same count, same key → same partition number).
fn input_partitions(
    probe: &BaseConsumer<QuietEof>,
    options: &RuntimeOptions,
) -> anyhow::Result<i32> {
    let mut counts = Vec::new();
    for topic in &options.input_topics {
        let count = changelog::partition_count(probe, topic)?;
        if count == 0 {
            anyhow::bail!(
                "KAFKA_INPUT_TOPICS: topic {topic} does not exist on {}",
                options.kafka()
            );
        }
        counts.push((topic.clone(), count));
    }
    co_partitioned(&counts).map_err(|message| anyhow::anyhow!("KAFKA_INPUT_TOPICS: {message}"))
}

/// Topics the runtime keeps per input partition (changelogs, internal topics) that already
/// existed with another partition count — after the input topics were given more partitions,
/// say — would put state where no task reads it: refuse to start instead.
fn check_state_topics(
    probe: &BaseConsumer<QuietEof>,
    topics: &[String],
    partitions: i32,
) -> anyhow::Result<()> {
    let mut counts = vec![("the input topics".to_owned(), partitions)];
    for topic in topics {
        // A topic created a moment ago may not be in the metadata yet.
        let deadline = Instant::now() + Duration::from_secs(10);
        let count = loop {
            let count = changelog::partition_count(probe, topic)?;
            if count > 0 || Instant::now() >= deadline {
                break count;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        counts.push((topic.clone(), count));
    }
    co_partitioned(&counts).map(|_| ()).map_err(|message| {
        anyhow::anyhow!(
            "{message}; recreate the job's changelog and internal topics with {partitions} \
             partitions (or use a new consumer group)"
        )
    })
}

/// The shared partition count of `counts` (topic, partitions), or what differs.
fn co_partitioned(counts: &[(String, i32)]) -> Result<i32, String> {
    let Some((_, first)) = counts.first() else {
        return Err("no input topics".into());
    };
    if counts.iter().all(|(_, count)| count == first) {
        return Ok(*first);
    }
    let listed: Vec<String> = counts
        .iter()
        .map(|(topic, count)| format!("{topic}: {count}"))
        .collect();
    Err(format!(
        "topics are not co-partitioned (partition counts {})",
        listed.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::co_partitioned;

    #[test]
    fn co_partitioning_needs_one_partition_count() {
        let topics = |counts: &[(&str, i32)]| -> Vec<(String, i32)> {
            counts.iter().map(|(t, c)| ((*t).to_owned(), *c)).collect()
        };
        assert_eq!(co_partitioned(&topics(&[("orders", 6)])), Ok(6));
        assert_eq!(
            co_partitioned(&topics(&[("orders", 6), ("clickstream", 6)])),
            Ok(6)
        );
        let err = co_partitioned(&topics(&[("orders", 6), ("clickstream", 12)])).unwrap_err();
        assert!(err.contains("orders: 6, clickstream: 12"), "{err}");
        assert!(co_partitioned(&[]).is_err());
    }
}
