//! The processing core: records in, processor calls, one Kafka transaction per commit interval.
//!
//! # Partition ownership
//!
//! Partitions are assigned by the Kafka consumer group (cooperative-sticky for one input topic,
//! range for co-partitioned inputs; static membership with the pod name as
//! `group.instance.id`), not computed from the StatefulSet ordinal. The HPA
//! changes the replica count without restarting existing pods, so a static `partition % replicas`
//! split would overlap or leave gaps until every pod restarted; the group protocol always gives a
//! partition to exactly one live member. It is also what fences zombies: offsets are committed
//! through the transaction with the consumer group metadata (exactly-once v2, KIP-447), so a
//! replica that lost a partition cannot commit for it, and a restarted pod's
//! `init_transactions` with the same transactional id aborts whatever its previous life left
//! open. Static membership keeps a restarted pod's partitions with it (no rebalance within the
//! session timeout).
//!
//! # One transaction
//!
//! Between commits, outputs, late and dead-letter records go to the transactional producer at
//! once; state writes stay in each partition's overlay. A commit sends the overlays to the
//! changelogs, applies the Redis writes, adds the input offsets to the transaction and commits;
//! only then are the overlays written to RocksDB.
//!
//! # A failed transaction
//!
//! Any failure of a transaction (a produce error, Redis, sending offsets, the commit) aborts it
//! at once, drops the overlays and, after a backoff, rewinds the consumer to the committed
//! offsets ([`crate::recovery`]; docs/failures.md). The producer is a [`ThreadedProducer`]: its
//! delivery reports are served on a thread of its own, which librdkafka's abort waits for.
//! A record the producer or broker refuses is dead-lettered on the replay
//! ([`crate::rejection`]), so the partition moves on.

use crate::changelog;
use crate::checkpoints::Checkpointer;
use crate::config::RuntimeOptions;
use crate::metrics::{
    ClassLabels, KindLabels, OutcomeLabels, PartitionLabels, PhaseLabels, RuntimeMetrics,
    TaskLabels, TopicLabels,
};
use crate::processor::{
    Context, Emitted, OutputRecord, ProcessError, Processor, Record, RedisWrite,
};
use crate::recovery::{Failure, FailureClass, Next, Recovery, RetryPolicy, Stop, TxnControl};
use crate::redis_sink::RedisSink;
use crate::rejection::{
    MAX_RECORD_BYTES, Refused, Rejections, fingerprint, headers_size, is_record_error, wire_size,
};
use crate::state::{PartitionState, StateError};
use crate::upgrade::{self, PartitionStart};
use crate::watermark::{PartitionActivity, beyond_future_skew, idle_advances};
use prometheus_client::metrics::counter::Counter;
use rdkafka::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use trendstream_service::ops::{Liveness, Readiness};

/// Timeout of the blocking transactional calls (sending offsets, committing); a transaction
/// cannot live longer than `KAFKA_TRANSACTION_TIMEOUT` anyway.
const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// An abort the broker does not complete within this is resumed later (librdkafka allows
/// calling it again), so the loop is never held for long.
const ABORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new producer may take to fence the old one and get its epoch.
const INIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `send` waits between attempts while the producer queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);
/// How long a partition being revoked waits for its checkpoint upload to finish.
const RELEASE_UPLOAD_WAIT: Duration = Duration::from_secs(30);
/// Redis writes handed to the writer thread at a time while a transaction is open.
const REDIS_BATCH: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("kafka: {context}: {source}")]
    Kafka {
        context: &'static str,
        source: KafkaError,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Changelog(#[from] changelog::ChangelogError),
    #[error("processor: {0}")]
    Processor(ProcessError),
    #[error("{0} (transaction not committed)")]
    Redis(#[from] crate::redis_sink::RedisSinkError),
    #[error("offsets to commit but no consumer group metadata yet")]
    NoGroupMetadata,
    #[error("the Kafka commit thread: {0}")]
    CommitThread(String),
    #[error("transactions cannot go on: {0}")]
    Stopped(#[from] Stop),
}

impl EngineError {
    /// How a transaction that failed with this is recovered from; `None`: the replica stops
    /// (its state or processor is broken, not the transaction).
    fn class(&self) -> Option<FailureClass> {
        match self {
            Self::Kafka { source, .. } => Some(kafka_class(source)),
            Self::Redis(_) | Self::NoGroupMetadata => Some(FailureClass::Transient),
            Self::State(_)
            | Self::Changelog(_)
            | Self::Processor(_)
            | Self::CommitThread(_)
            | Self::Stopped(_) => None,
        }
    }
}

/// The class of a Kafka error met in a transaction.
fn kafka_class(err: &KafkaError) -> FailureClass {
    match err {
        KafkaError::Transaction(e) if e.is_fatal() => FailureClass::Fatal,
        KafkaError::MessageProduction(RDKafkaErrorCode::Fatal) => FailureClass::Fatal,
        KafkaError::MessageProduction(code) if is_record_error(*code) => FailureClass::Record,
        _ => FailureClass::Transient,
    }
}

fn failure(context: &str, err: &KafkaError) -> Failure {
    Failure::new(kafka_class(err), format!("{context}: {err}"))
}

/// Commits the open transaction. A commit that timed out may still complete, and librdkafka
/// refuses any other transactional call (an abort too) until it is called again: so it is.
fn commit_resuming(producer: &TxnProducer) -> rdkafka::error::KafkaResult<()> {
    loop {
        match producer.commit_transaction(TXN_CALL_TIMEOUT) {
            Err(KafkaError::Transaction(err))
                if err.is_retriable() && !err.txn_requires_abort() && !err.is_fatal() =>
            {
                tracing::warn!(%err, "the commit did not complete in time; resuming it");
            }
            result => return result,
        }
    }
}

/// The transactional producer: delivery reports are served on its own polling thread.
pub type TxnProducer = ThreadedProducer<DeliveryTracker>;

/// Makes a new transactional producer (same transactional id), not yet initialised.
pub type ProducerFactory = Box<dyn Fn() -> Result<TxnProducer, KafkaError> + Send>;

/// The producer, and how to replace it after a fatal error.
pub struct ProducerSlot {
    producer: Arc<TxnProducer>,
    factory: ProducerFactory,
    recreations: Counter,
}

impl ProducerSlot {
    pub fn new(producer: TxnProducer, factory: ProducerFactory, recreations: Counter) -> Self {
        Self {
            producer: Arc::new(producer),
            factory,
            recreations,
        }
    }
}

impl TxnControl for ProducerSlot {
    fn purge_queued(&self) {
        // Only what is queued: purging requests in flight would leave gaps in the idempotent
        // producer's sequence numbers, so librdkafka's abort waits for them (milliseconds).
        self.producer.purge(PurgeConfig::default().queue());
    }

    fn abort(&self) -> Result<(), Failure> {
        self.producer
            .abort_transaction(ABORT_TIMEOUT)
            .map_err(|err| failure("abort transaction", &err))
    }

    fn recreate(&mut self) -> Result<(), Failure> {
        let producer = (self.factory)().map_err(|err| failure("creating a producer", &err))?;
        // The old producer goes first (its queue purged); the new one fences it in any case.
        self.producer = Arc::new(producer);
        self.recreations.inc();
        tracing::warn!("producer re-created after a fatal error");
        self.producer
            .init_transactions(INIT_TIMEOUT)
            .map_err(|err| failure("initialising transactions of the new producer", &err))
    }
}

/// A transaction whose Kafka commit runs on a thread of its own while processing goes on
/// (into the next transaction: state in a fresh overlay, records held in [`Deferred`]).
struct InFlight {
    commit: std::thread::JoinHandle<rdkafka::error::KafkaResult<()>>,
    /// The input positions this transaction commits.
    positions: HashMap<(String, i32), i64>,
    started: Instant,
    kafka_started: Instant,
}

/// A record made while a commit is in flight, sent once the next transaction begins.
struct Deferred {
    topic: String,
    partition: Option<i32>,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Option<OwnedHeaders>,
}

fn kafka(context: &'static str) -> impl FnOnce(KafkaError) -> EngineError {
    move |source| EngineError::Kafka { context, source }
}

/// Records the offsets the changelog writes landed at, so a committed partition can store how
/// far its changelog goes; also keeps the records the producer or broker refused, for
/// [`Rejections::learn`].
#[derive(Default)]
pub struct DeliveryTracker {
    changelogs: HashSet<String>,
    delivered: Mutex<HashMap<(String, i32), i64>>,
    refused: Mutex<Vec<Refused>>,
}

impl DeliveryTracker {
    pub fn new(changelogs: impl IntoIterator<Item = String>) -> Self {
        Self {
            changelogs: changelogs.into_iter().collect(),
            ..Self::default()
        }
    }

    fn take(&self) -> HashMap<(String, i32), i64> {
        std::mem::take(&mut *lock(&self.delivered))
    }

    fn refuse(&self, refused: Refused) {
        lock(&self.refused).push(refused);
    }

    fn take_refused(&self) -> Vec<Refused> {
        std::mem::take(&mut *lock(&self.refused))
    }
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) if self.changelogs.contains(message.topic()) => {
                let mut delivered = lock(&self.delivered);
                let max = delivered
                    .entry((message.topic().to_owned(), message.partition()))
                    .or_insert(message.offset());
                *max = (*max).max(message.offset());
            }
            Ok(_) => {}
            Err((err, message)) => {
                if let Some(code) = err.rdkafka_error_code()
                    && is_record_error(code)
                {
                    self.refuse(Refused::of(message, code));
                }
            }
        }
    }
}

/// Observes the time since the previous phase ended into `commit_phase_seconds`.
struct PhaseClock<'a> {
    metrics: &'a RuntimeMetrics,
    since: Instant,
}

impl<'a> PhaseClock<'a> {
    fn new(metrics: &'a RuntimeMetrics) -> Self {
        Self {
            metrics,
            since: Instant::now(),
        }
    }

    fn done(&mut self, phase: &'static str) {
        let now = Instant::now();
        self.metrics
            .commit_phase_seconds
            .get_or_create(&PhaseLabels { phase })
            .observe((now - self.since).as_secs_f64());
        self.since = now;
    }
}

/// The wall clock in ms since the epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Everything the processing loop and the rebalance callbacks share.
pub struct Core<P: Processor> {
    processor: P,
    options: RuntimeOptions,
    dlq_topic: String,
    /// Changelog topic per store index (the processor's stores, then the runtime's).
    changelogs: Vec<String>,
    slot: ProducerSlot,
    recovery: Recovery,
    rejections: Rejections,
    inflight: Option<InFlight>,
    deferred: std::cell::RefCell<Vec<Deferred>>,
    tasks: BTreeMap<i32, PartitionState>,
    /// Next offset to read per input (topic, partition), as processed.
    positions: HashMap<(String, i32), i64>,
    /// Offsets committed per input (topic, partition); `None`: nothing committed yet.
    committed: HashMap<(String, i32), Option<i64>>,
    /// Stateless fresh starts: input offsets below these are not this epoch's (skipped).
    fresh_from: HashMap<(String, i32), i64>,
    redis: Option<RedisSink>,
    redis_pending: Vec<RedisWrite>,
    txn_open: bool,
    uncommitted: usize,
    txn_started: Instant,
    checkpointer: Checkpointer,
    metrics: Arc<RuntimeMetrics>,
    readiness: Readiness,
    /// Set when readiness shows a failed transaction, until the next commit.
    degraded: bool,
    liveness: Liveness,
    max_out_of_orderness: i64,
    allowed_lateness: i64,
    max_future_skew: i64,
}

/// What the engine shares with the rest of the service.
pub struct Services {
    pub redis: Option<RedisSink>,
    pub checkpointer: Checkpointer,
    pub metrics: Arc<RuntimeMetrics>,
    pub readiness: Readiness,
    pub liveness: Liveness,
}

/// Why the state writes of the record just processed would be refused, if they would be.
fn refused_write(
    state: &PartitionState,
    rejections: &Rejections,
    changelogs: &[String],
) -> Option<String> {
    state.record_writes().find_map(|(store, key, value)| {
        rejections
            .check(&changelogs[store], Some(key), value, 0)
            .map(|reason| {
                format!(
                    "state store {}, key {:?}: {reason}",
                    state.stores()[store],
                    String::from_utf8_lossy(key)
                )
            })
    })
}

impl<P: Processor> Core<P> {
    pub fn new(
        processor: P,
        options: RuntimeOptions,
        slot: ProducerSlot,
        changelogs: Vec<String>,
        services: Services,
    ) -> Self {
        let dlq_topic = options.dlq_topic(processor.service());
        Self {
            max_out_of_orderness: options.max_out_of_orderness_ms(),
            allowed_lateness: options.allowed_lateness_ms(),
            max_future_skew: options.max_future_skew_ms(),
            processor,
            dlq_topic,
            changelogs,
            slot,
            recovery: Recovery::new(RetryPolicy {
                initial: options.retry_backoff,
                max: options.retry_backoff_max,
            }),
            rejections: Rejections::new(MAX_RECORD_BYTES),
            inflight: None,
            deferred: std::cell::RefCell::default(),
            tasks: BTreeMap::new(),
            positions: HashMap::new(),
            committed: HashMap::new(),
            fresh_from: HashMap::new(),
            redis: services.redis,
            redis_pending: Vec::new(),
            txn_open: false,
            uncommitted: 0,
            txn_started: Instant::now(),
            checkpointer: services.checkpointer,
            metrics: services.metrics,
            readiness: services.readiness,
            degraded: false,
            liveness: services.liveness,
            options,
        }
    }

    fn producer(&self) -> &TxnProducer {
        &self.slot.producer
    }

    /// Begins a transaction unless one is open — or committing, in which case what is made
    /// now waits in [`Deferred`] for the next one.
    fn ensure_transaction(&mut self) -> Result<(), EngineError> {
        if !self.txn_open && self.inflight.is_none() {
            self.producer()
                .begin_transaction()
                .map_err(kafka("begin transaction"))?;
            self.txn_open = true;
            self.txn_started = Instant::now();
            self.liveness.waiting();
        }
        Ok(())
    }

    /// Sends one record in the open transaction, waiting while the producer queue is full.
    fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
    ) -> Result<(), EngineError> {
        if self.inflight.is_some() {
            self.deferred.borrow_mut().push(Deferred {
                topic: topic.to_owned(),
                partition,
                key: key.map(<[u8]>::to_vec),
                payload: payload.map(<[u8]>::to_vec),
                headers,
            });
            return Ok(());
        }
        let header_bytes = headers.as_ref().map_or(0, headers_size);
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        loop {
            match self.producer().send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The polling thread empties the queue.
                    record = back;
                    std::thread::sleep(QUEUE_FULL_WAIT);
                }
                Err((err, _)) => {
                    // The producer's own check refused it where `Rejections::check` let it
                    // pass: learned with the failure, dead-lettered on the replay.
                    if let KafkaError::MessageProduction(code) = err
                        && is_record_error(code)
                    {
                        self.producer().context().refuse(Refused {
                            topic: topic.to_owned(),
                            partition: partition.unwrap_or(-1),
                            fingerprint: fingerprint(key, payload),
                            size: wire_size(key, payload, header_bytes),
                            code,
                        });
                    }
                    return Err(kafka("produce")(err));
                }
            }
        }
        self.metrics
            .records_out
            .get_or_create(&TopicLabels {
                topic: topic.to_owned(),
            })
            .inc();
        Ok(())
    }

    /// Processes one input record: decode, process, event time, timers; errors of the
    /// record's own making go to the dead-letter topic. A failed transaction is aborted here
    /// (`Err` only when the replica must stop); while recovery holds input, the record is
    /// dropped: it is read again after the rewind.
    pub fn handle(&mut self, message: &BorrowedMessage<'_>) -> Result<(), EngineError> {
        if !self.recovery.running() {
            return Ok(());
        }
        self.process_message(message)
            .or_else(|err| self.fail_transaction(err))
    }

    fn process_message(&mut self, message: &BorrowedMessage<'_>) -> Result<(), EngineError> {
        let started = Instant::now();
        let partition = message.partition();
        let topic = message.topic();
        let key = (topic.to_owned(), partition);
        if let Some(&from) = self.fresh_from.get(&key)
            && message.offset() < from
        {
            // Fetched before a stateless fresh start's offset: the next commit stores it.
            self.positions.entry(key).or_insert(from);
            return Ok(());
        }
        self.ensure_transaction()?;
        self.metrics
            .records_in
            .get_or_create(&TopicLabels {
                topic: topic.to_owned(),
            })
            .inc();
        let record = Record {
            topic,
            partition,
            offset: message.offset(),
            key: message.key(),
            payload: message.payload(),
            timestamp: message.timestamp().to_millis(),
        };
        let Some(state) = self.tasks.get_mut(&partition) else {
            // Not ours (a revoke raced the fetch): leave it for the owner.
            tracing::debug!(topic, partition, "record for an unowned partition skipped");
            return Ok(());
        };
        state.last_record = Instant::now();
        let mut emitted = Emitted::default();
        let outcome = match self.processor.decode(&record) {
            Err(err) => Err(err),
            Ok(event) => {
                let event_time = self.processor.event_time(&event);
                if let Some(reason) = beyond_future_skew(event_time, now_ms(), self.max_future_skew)
                {
                    self.metrics.future_records.inc();
                    return self
                        .dead_letter(&record, &reason)
                        .and_then(|()| self.processed(message, started));
                }
                state.begin_record();
                let mut ctx = Context {
                    state: &mut *state,
                    emitted: &mut emitted,
                    allowed_lateness: self.allowed_lateness,
                };
                let processed = self.processor.process(&mut ctx, event);
                let processed = match processed {
                    Ok(()) => state
                        .observe(event_time, self.max_out_of_orderness)
                        .map_err(ProcessError::from)
                        .and_then(|_| {
                            // A state write the changelog would refuse fails the record, not
                            // the transaction.
                            refused_write(state, &self.rejections, &self.changelogs)
                                .map_or(Ok(()), |reason| Err(ProcessError::Invalid(reason)))
                        }),
                    Err(err) => Err(err),
                };
                if processed.as_ref().is_err_and(ProcessError::is_record_error) {
                    state.rollback_record();
                    emitted = Emitted::default();
                }
                processed
            }
        };
        match outcome {
            Ok(()) => self.flush_emitted(emitted, &record, true)?,
            Err(err) if err.is_record_error() => self.dead_letter(&record, &err.to_string())?,
            Err(err) => return Err(EngineError::Processor(err)),
        }
        self.fire_timers(partition)?;
        self.processed(message, started)
    }

    /// Books `message` as processed: the next commit stores the offset after it.
    fn processed(
        &mut self,
        message: &BorrowedMessage<'_>,
        started: Instant,
    ) -> Result<(), EngineError> {
        self.positions.insert(
            (message.topic().to_owned(), message.partition()),
            message.offset() + 1,
        );
        self.uncommitted += 1;
        self.metrics
            .processing_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Sends what one record (`is_input`) or timer callback made; an output the producer or
    /// broker refuses goes to the dead-letter topic instead, with `source`'s headers.
    fn flush_emitted(
        &mut self,
        emitted: Emitted,
        source: &Record<'_>,
        is_input: bool,
    ) -> Result<(), EngineError> {
        for out in &emitted.records {
            let topic = out.topic.as_deref().unwrap_or(&self.options.output_topic);
            let refused = self
                .rejections
                .check(topic, out.key.as_deref(), Some(&out.payload), 0);
            match refused {
                Some(reason) => self.dead_letter_output(source, topic, out, &reason)?,
                None => self.send(
                    topic,
                    out.partition,
                    out.key.as_deref(),
                    Some(&out.payload),
                    None,
                )?,
            }
        }
        if let (Some(reason), true) = (&emitted.late, is_input) {
            let headers = self.source_headers(source, reason).insert(Header {
                key: "watermark",
                value: Some(
                    self.tasks
                        .get(&source.partition)
                        .map_or(i64::MIN, |s| s.clock().watermark)
                        .to_string()
                        .as_bytes(),
                ),
            });
            let refused = self.rejections.check(
                &self.options.late_topic,
                source.key,
                source.payload,
                headers_size(&headers),
            );
            match refused {
                Some(refused) => self.dead_letter(source, &format!("{reason}; {refused}"))?,
                None => {
                    self.send(
                        &self.options.late_topic,
                        None,
                        source.key,
                        source.payload,
                        Some(headers),
                    )?;
                    self.metrics.late_records.inc();
                }
            }
        }
        self.redis_pending.extend(emitted.redis);
        if self.redis_pending.len() >= REDIS_BATCH
            && let Some(redis) = &self.redis
        {
            redis.submit(std::mem::take(&mut self.redis_pending))?;
        }
        Ok(())
    }

    fn source_headers(&self, record: &Record<'_>, error: &str) -> OwnedHeaders {
        let now = now_ms();
        OwnedHeaders::new()
            .insert(Header {
                key: "error",
                value: Some(error.as_bytes()),
            })
            .insert(Header {
                key: "source.topic",
                value: Some(record.topic.as_bytes()),
            })
            .insert(Header {
                key: "source.partition",
                value: Some(record.partition.to_string().as_bytes()),
            })
            .insert(Header {
                key: "source.offset",
                value: Some(record.offset.to_string().as_bytes()),
            })
            .insert(Header {
                key: "service",
                value: Some(self.processor.service().as_bytes()),
            })
            .insert(Header {
                key: "timestamp",
                value: Some(now.to_string().as_bytes()),
            })
    }

    fn dead_letter(&self, record: &Record<'_>, error: &str) -> Result<(), EngineError> {
        tracing::warn!(
            topic = record.topic,
            partition = record.partition,
            offset = record.offset,
            error,
            "record to the dead-letter topic"
        );
        self.send_dead_letter(record, record.key, record.payload, error, None)
    }

    /// An output record that its topic refuses, to the dead-letter topic (header
    /// `target.topic`), so that the input's other effects stand.
    fn dead_letter_output(
        &self,
        source: &Record<'_>,
        topic: &str,
        out: &OutputRecord,
        reason: &str,
    ) -> Result<(), EngineError> {
        tracing::warn!(
            topic,
            source.topic = source.topic,
            source.partition = source.partition,
            source.offset = source.offset,
            reason,
            "output refused; to the dead-letter topic"
        );
        let error = format!("output for {topic} refused: {reason}");
        self.send_dead_letter(
            source,
            out.key.as_deref(),
            Some(&out.payload),
            &error,
            Some(topic),
        )
    }

    fn send_dead_letter(
        &self,
        source: &Record<'_>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        error: &str,
        target: Option<&str>,
    ) -> Result<(), EngineError> {
        let with_target = |headers: OwnedHeaders| match target {
            Some(topic) => headers.insert(Header {
                key: "target.topic",
                value: Some(topic.as_bytes()),
            }),
            None => headers,
        };
        let headers = with_target(self.source_headers(source, error));
        let refused = self
            .rejections
            .check(&self.dlq_topic, key, payload, headers_size(&headers));
        // Even the dead-letter topic refuses it: the headers still say what and why.
        let (payload, headers) = match refused {
            Some(reason) => {
                let error = format!("{error}; payload omitted: {reason}");
                (None, with_target(self.source_headers(source, &error)))
            }
            None => (payload, headers),
        };
        self.send(&self.dlq_topic, None, key, payload, Some(headers))?;
        self.metrics.dlq_records.inc();
        Ok(())
    }

    /// Runs the timers of `partition` that its watermark has reached, in time order.
    fn fire_timers(&mut self, partition: i32) -> Result<(), EngineError> {
        loop {
            let Some(state) = self.tasks.get_mut(&partition) else {
                return Ok(());
            };
            let watermark = state.clock().watermark;
            let Some(timer) = state.pop_due_timer(watermark) else {
                return Ok(());
            };
            let mut emitted = Emitted::default();
            state.begin_record();
            let mut ctx = Context {
                state: &mut *state,
                emitted: &mut emitted,
                allowed_lateness: self.allowed_lateness,
            };
            let fired = self
                .processor
                .on_timer(&mut ctx, timer.clone())
                .and_then(|()| {
                    refused_write(state, &self.rejections, &self.changelogs)
                        .map_or(Ok(()), |reason| Err(ProcessError::Invalid(reason)))
                });
            let payload = serde_json::json!({ "timer": { "time": timer.time, "key": timer.key } })
                .to_string();
            let source = Record {
                topic: "(timer)",
                partition,
                offset: -1,
                key: Some(timer.key.as_bytes()),
                payload: Some(payload.as_bytes()),
                timestamp: None,
            };
            match fired {
                Ok(()) => self.flush_emitted(emitted, &source, false)?,
                Err(err) if err.is_record_error() => {
                    state.rollback_record();
                    tracing::warn!(partition, ?timer, error = %err, "timer callback failed");
                    self.dead_letter(&source, &err.to_string())?;
                }
                Err(err) => return Err(EngineError::Processor(err)),
            }
        }
    }

    /// Carries idle partitions along with the active ones (see [`crate::watermark`]).
    pub fn advance_idle(&mut self) -> Result<(), EngineError> {
        if !self.recovery.running() {
            return Ok(());
        }
        self.advance_idle_partitions()
            .or_else(|err| self.fail_transaction(err))
    }

    fn advance_idle_partitions(&mut self) -> Result<(), EngineError> {
        let activity: Vec<PartitionActivity> = self
            .tasks
            .values()
            .map(|s| PartitionActivity {
                partition: s.partition(),
                watermark: s.clock().watermark,
                last_record: s.last_record,
            })
            .collect();
        for (partition, watermark) in
            idle_advances(&activity, Instant::now(), self.options.idle_timeout)
        {
            // Only worth a changelog write when something waits on this partition's clock.
            let waiting = self
                .tasks
                .get(&partition)
                .is_some_and(|s| s.timer_count() > 0);
            if !waiting {
                continue;
            }
            self.ensure_transaction()?;
            if let Some(state) = self.tasks.get_mut(&partition) {
                state.advance_watermark(watermark)?;
                tracing::debug!(partition, watermark, "idle partition's watermark advanced");
            }
            self.fire_timers(partition)?;
            self.uncommitted += 1;
        }
        Ok(())
    }

    pub fn commit_due(&self) -> bool {
        self.txn_open
            && self.inflight.is_none()
            && (self.uncommitted >= self.options.commit_max_records
                || self.txn_started.elapsed() >= self.options.commit_interval)
    }

    pub fn commit_in_flight(&self) -> bool {
        self.inflight.is_some()
    }

    /// True when the next transaction is already full while the previous one still commits:
    /// the loop then waits for the commit instead of reading on.
    pub fn commit_backlogged(&self) -> bool {
        self.inflight.is_some() && self.uncommitted >= self.options.commit_max_records
    }

    /// Commits synchronously: the transaction in flight, then the open one (rebalances,
    /// shutdown). `Ok(false)` when one had to be aborted (replayed later); an error is fatal
    /// for this replica.
    pub fn commit(&mut self, group: Option<&ConsumerGroupMetadata>) -> Result<bool, EngineError> {
        if self.finish_commit(true)? == Some(false) || !self.start_commit(group)? {
            return Ok(false);
        }
        Ok(self.finish_commit(true)?.unwrap_or(true))
    }

    /// Starts committing the open transaction: its changelog records, Redis writes and input
    /// offsets go out here; Kafka's commit (the broker round trips) runs on a thread while the
    /// loop processes on. `Ok(false)` when it had to be aborted.
    pub fn start_commit(
        &mut self,
        group: Option<&ConsumerGroupMetadata>,
    ) -> Result<bool, EngineError> {
        if !self.txn_open || self.inflight.is_some() {
            return Ok(true);
        }
        let started = Instant::now();
        if let Err(err) = self.prepare_commit(group) {
            self.fail_transaction(err)?;
            return Ok(false);
        }
        let producer = self.slot.producer.clone();
        let commit = std::thread::Builder::new()
            .name("kafka-commit".into())
            .spawn(move || commit_resuming(&producer))
            .map_err(|err| EngineError::CommitThread(err.to_string()))?;
        self.inflight = Some(InFlight {
            commit,
            positions: self.positions.clone(),
            started,
            kafka_started: Instant::now(),
        });
        self.txn_open = false;
        self.uncommitted = 0;
        Ok(true)
    }

    /// Completes the commit in flight: `Ok(None)` while it runs (only when not `wait`),
    /// `Ok(Some(true))` committed (or nothing was in flight), `Ok(Some(false))` aborted.
    pub fn finish_commit(&mut self, wait: bool) -> Result<Option<bool>, EngineError> {
        let Some(inflight) = self.inflight.take() else {
            return Ok(Some(true));
        };
        if !wait && !inflight.commit.is_finished() {
            self.inflight = Some(inflight);
            return Ok(None);
        }
        match self.join_commit(inflight)? {
            Ok(()) => {
                self.checkpoint_if_due(false);
                self.resume_transaction()
                    .or_else(|err| self.fail_transaction(err))?;
                Ok(Some(true))
            }
            Err(err) => {
                self.fail_transaction(err)?;
                Ok(Some(false))
            }
        }
    }

    /// Waits for Kafka's commit of `inflight`; a committed transaction's state is applied.
    /// The outer error stops the replica, the inner one fails the transaction.
    fn join_commit(&mut self, inflight: InFlight) -> Result<Result<(), EngineError>, EngineError> {
        let result = inflight
            .commit
            .join()
            .map_err(|_| EngineError::CommitThread("panicked".into()))?;
        self.metrics
            .commit_phase_seconds
            .get_or_create(&PhaseLabels {
                phase: "kafka_commit",
            })
            .observe(inflight.kafka_started.elapsed().as_secs_f64());
        if let Err(err) = result {
            return Ok(Err(kafka("commit transaction")(err)));
        }
        self.metrics
            .transactions
            .get_or_create(&OutcomeLabels {
                outcome: "committed",
            })
            .inc();
        self.metrics
            .commit_seconds
            .observe(inflight.started.elapsed().as_secs_f64());
        self.metrics.committed();
        self.after_commit(&inflight.positions)?;
        Ok(Ok(()))
    }

    /// Changelog records, Redis writes and offsets of the open transaction; then its writes
    /// are frozen (see [`PartitionState::freeze`]).
    fn prepare_commit(&mut self, group: Option<&ConsumerGroupMetadata>) -> Result<(), EngineError> {
        let mut phase = PhaseClock::new(&self.metrics);
        for state in self.tasks.values() {
            for (store, key, value) in state.changes() {
                self.send(
                    &self.changelogs[store],
                    Some(state.partition()),
                    Some(key),
                    value,
                    None,
                )?;
            }
        }
        for state in self.tasks.values_mut() {
            state.freeze();
        }
        phase.done("changelog");
        if let Some(redis) = &self.redis {
            redis
                .submit(std::mem::take(&mut self.redis_pending))
                .and_then(|()| redis.wait())?;
        }
        phase.done("redis");
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in &self.positions {
            if self
                .committed
                .get(&(topic.clone(), *partition))
                .copied()
                .flatten()
                != Some(*next)
            {
                let mut offset = offsets.add_partition(topic, *partition);
                offset
                    .set_offset(Offset::Offset(*next))
                    .map_err(kafka("offsets"))?;
                // Stateless: the epoch mark commits with the offsets (see crate::upgrade).
                if let Some(mark) = self.tasks.get(partition).and_then(|s| s.epoch_mark()) {
                    offset.set_metadata(mark.encode());
                }
            }
        }
        if offsets.count() > 0 {
            let group = group.ok_or(EngineError::NoGroupMetadata)?;
            self.producer()
                .send_offsets_to_transaction(&offsets, group, TXN_CALL_TIMEOUT)
                .map_err(kafka("send offsets to transaction"))?;
        }
        phase.done("offsets");
        Ok(())
    }

    fn after_commit(&mut self, positions: &HashMap<(String, i32), i64>) -> Result<(), EngineError> {
        // The commit flushed every record, and the polling thread has served (or is serving)
        // their delivery reports; one still being served counts at the next commit, which
        // only makes the recorded changelog position lower (a longer, idempotent replay).
        let delivered = self.producer().context().take();
        for state in self.tasks.values_mut() {
            let reached: Vec<(usize, i64)> = self
                .changelogs
                .iter()
                .enumerate()
                .filter_map(|(index, topic)| {
                    delivered
                        .get(&(topic.clone(), state.partition()))
                        .map(|offset| (index, offset + 1))
                })
                .collect();
            state.apply(&reached)?;
        }
        for (key, next) in positions {
            self.committed.insert(key.clone(), Some(*next));
        }
        self.recovery.committed();
        self.liveness.done();
        if self.degraded {
            self.degraded = false;
            self.metrics.retrying.set(0);
            self.readiness.set_ready();
        }
        Ok(())
    }

    /// After a commit: begins the next transaction if anything was made meanwhile, and sends
    /// what waited for it.
    fn resume_transaction(&mut self) -> Result<(), EngineError> {
        let deferred = std::mem::take(self.deferred.get_mut());
        let pending = !deferred.is_empty()
            || self.uncommitted > 0
            || !self.redis_pending.is_empty()
            || self.tasks.values().any(PartitionState::has_changes)
            || self.offsets_ahead();
        if !pending {
            return Ok(());
        }
        self.ensure_transaction()?;
        for record in deferred {
            self.send(
                &record.topic,
                record.partition,
                record.key.as_deref(),
                record.payload.as_deref(),
                record.headers,
            )?;
        }
        Ok(())
    }

    /// A transaction failed: aborts it (or re-creates the producer), drops what it did and
    /// holds input until the replay ([`Self::tick`]). `Err` when the replica must stop.
    fn fail_transaction(&mut self, err: EngineError) -> Result<(), EngineError> {
        let Some(class) = err.class() else {
            return Err(err);
        };
        // A commit in flight ends first: what it committed is applied, not replayed.
        if let Some(inflight) = self.inflight.take()
            && let Err(commit_err) = self.join_commit(inflight)?
        {
            tracing::debug!(error = %commit_err, "the commit in flight failed too");
        }
        let learned = self
            .rejections
            .learn(self.producer().context().take_refused());
        let class = match class {
            FailureClass::Fatal => FailureClass::Fatal,
            _ if learned => FailureClass::Record,
            // Refused again although known: learning did not help.
            FailureClass::Record => FailureClass::Transient,
            other => other,
        };
        tracing::warn!(
            error = %err,
            class = class.as_str(),
            "transaction failed; it is aborted and replayed from the committed offsets"
        );
        if matches!(err, EngineError::Redis(_)) {
            self.metrics.redis_write_errors.inc();
        }
        self.metrics
            .transactions
            .get_or_create(&OutcomeLabels { outcome: "aborted" })
            .inc();
        self.metrics
            .transaction_failures
            .get_or_create(&ClassLabels {
                class: class.as_str(),
            })
            .inc();
        let started = Instant::now();
        let recovered = self.recovery.failed(
            &mut self.slot,
            Failure::new(class, err.to_string()),
            started,
            fastrand::f64(),
        );
        self.metrics
            .abort_seconds
            .observe(started.elapsed().as_secs_f64());
        self.discard_transaction()?;
        self.show_recovery();
        recovered.map_err(EngineError::Stopped)
    }

    /// Drops everything the failed transaction did here: state writes, deferred records and
    /// pending Redis writes.
    fn discard_transaction(&mut self) -> Result<(), EngineError> {
        self.producer().context().take();
        for state in self.tasks.values_mut() {
            state.discard()?;
        }
        self.deferred.get_mut().clear();
        // Batches already handed over finish before the replay writes the same values again.
        if let Some(redis) = &self.redis
            && let Err(err) = redis.wait()
        {
            tracing::debug!(%err, "Redis writes of the aborted transaction failed; they are replayed");
        }
        self.redis_pending.clear();
        self.txn_open = false;
        self.uncommitted = 0;
        Ok(())
    }

    /// Readiness and the `retrying` gauge after recovery moved.
    fn show_recovery(&mut self) {
        self.metrics
            .retrying
            .set(i64::from(!self.recovery.running()));
        if let Some(reason) = self.recovery.reason() {
            self.degraded = true;
            self.readiness.set_not_ready(reason);
        }
    }

    /// True while input is held after a failed transaction (the loop pauses it).
    pub fn holding(&self) -> bool {
        !self.recovery.running()
    }

    /// Moves recovery on: a pending abort or new producer, or the end of the backoff, when the
    /// consumer is sought back to the committed offsets. `Err` when the replica must stop.
    pub fn tick(
        &mut self,
        consumer: &BaseConsumer<impl ConsumerContext>,
    ) -> Result<(), EngineError> {
        if self.recovery.running() {
            return Ok(());
        }
        let next = self
            .recovery
            .poll(&mut self.slot, Instant::now(), fastrand::f64())?;
        if next == Next::Replay {
            self.rewind(consumer)?;
        }
        self.show_recovery();
        Ok(())
    }

    /// Moves each partition's position over what the consumer read after the last record it
    /// delivered but never delivers: transaction commit and abort markers, aborted records.
    /// Committing last offset + 1 would leave the group one marker short of the partition's
    /// end for ever (lag 1 on every idle partition of a transactional topic, KAFKA-6607); the
    /// consumer's position is where it reads next. Exact because every record the consumer
    /// delivered has been processed: the loop handles each one before calling this, and while
    /// input is held (records dropped, read again after the rewind) nothing moves.
    pub fn step_over_markers(
        &mut self,
        consumer: &BaseConsumer<impl ConsumerContext>,
    ) -> Result<(), EngineError> {
        if !self.recovery.running() || self.positions.is_empty() {
            return Ok(());
        }
        let read = match consumer.position() {
            Ok(read) => read,
            Err(err) => {
                tracing::debug!(%err, "consumer position unavailable");
                return Ok(());
            }
        };
        let mut stepped = false;
        for element in read.elements() {
            let Offset::Offset(next) = element.offset() else {
                continue;
            };
            // Only partitions with a record processed since their assignment or the last
            // rewind: the consumer's position is then past that record.
            if let Some(position) = self
                .positions
                .get_mut(&(element.topic().to_owned(), element.partition()))
                && next > *position
            {
                *position = next;
                stepped = true;
            }
        }
        if stepped && self.offsets_ahead() {
            // A transaction of its own when idle: the offsets alone are committed.
            self.ensure_transaction()?;
        }
        Ok(())
    }

    /// True when some position is not committed yet.
    fn offsets_ahead(&self) -> bool {
        self.positions
            .iter()
            .any(|(key, next)| self.committed.get(key).copied().flatten() != Some(*next))
    }

    /// Seeks the consumer back to the committed offsets.
    fn rewind(&mut self, consumer: &BaseConsumer<impl ConsumerContext>) -> Result<(), EngineError> {
        for ((topic, partition), committed) in &self.committed {
            let offset = committed.map_or(Offset::Beginning, Offset::Offset);
            consumer
                .seek(topic, *partition, offset, Duration::from_secs(10))
                .map_err(kafka("seek after abort"))?;
        }
        self.positions.clear();
        Ok(())
    }

    /// Takes over newly assigned partitions: committed offsets, then state (local, else the
    /// newest GCS checkpoint, else empty) brought up to date from the changelogs.
    pub fn acquire(
        &mut self,
        consumer: &BaseConsumer<impl ConsumerContext>,
        assigned: &TopicPartitionList,
    ) -> Result<(), EngineError> {
        // Our own commit in flight ends first: nothing of it may be in doubt while the new
        // partitions' offsets are read and their changelogs replayed.
        self.finish_commit(true)?;
        self.readiness
            .set_not_ready("restoring state of assigned partitions");
        // A restore takes as long as the changelog is: not a stuck transaction.
        self.liveness.done();
        // Waits for any transaction of the previous owner to finish (read_committed asks the
        // broker for stable offsets), so the changelog end below is final.
        let committed = consumer
            .committed_offsets(assigned.clone(), Duration::from_secs(60))
            .map_err(kafka("committed offsets of assigned partitions"))?;
        let committed = committed.elements();
        let mut marks: HashMap<i32, Vec<Option<&str>>> = HashMap::new();
        for element in &committed {
            let offset = match element.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            };
            self.committed
                .insert((element.topic().to_owned(), element.partition()), offset);
            let mark = Some(element.metadata()).filter(|m| !m.is_empty());
            marks.entry(element.partition()).or_default().push(mark);
        }
        for element in assigned.elements() {
            let partition = element.partition();
            if self.tasks.contains_key(&partition) {
                continue;
            }
            let started = Instant::now();
            let start = upgrade::partition_start(
                self.options.upgrade_mode,
                self.options.upgrade_epoch.as_deref(),
                marks.get(&partition).map_or(&[], Vec::as_slice),
            );
            let (state, replayed) = self.checkpointer.open_partition(
                partition,
                self.processor.stores(),
                &self.changelogs,
                &start,
            )?;
            if let PartitionStart::Fresh(epoch) = &start {
                tracing::info!(
                    partition,
                    epoch,
                    "stateless: new epoch, empty state from the input's end"
                );
                self.start_at_end(consumer, partition)?;
            }
            self.metrics.restored_records.inc_by(replayed);
            self.metrics
                .restore_seconds
                .observe(started.elapsed().as_secs_f64());
            tracing::info!(
                partition,
                replayed,
                watermark = state.clock().watermark,
                seconds = started.elapsed().as_secs_f64(),
                "partition acquired"
            );
            self.tasks.insert(partition, state);
        }
        self.fence_redis_writes();
        self.metrics
            .assigned_partitions
            .set(self.tasks.len() as i64);
        if self.txn_open || self.holding() {
            self.liveness.waiting();
        }
        match self.recovery.reason() {
            Some(reason) => self.readiness.set_not_ready(reason),
            None => self.readiness.set_ready(),
        }
        Ok(())
    }

    /// A stateless fresh start reads the partition's input from its current end (the last
    /// stable offset: this consumer reads committed records only); records before it that are
    /// fetched anyway are skipped ([`Self::handle`]), and the next commit stores these offsets
    /// with the new epoch's mark.
    fn start_at_end(
        &mut self,
        consumer: &BaseConsumer<impl ConsumerContext>,
        partition: i32,
    ) -> Result<(), EngineError> {
        for topic in &self.options.input_topics {
            let (_, end) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .map_err(kafka("end offsets of a fresh partition"))?;
            // Best effort: skipping in `handle` is what guarantees it.
            if let Err(err) = consumer.seek(topic, partition, Offset::Offset(end), Duration::ZERO) {
                tracing::debug!(topic, partition, %err, "seek to the input's end failed; skipping instead");
            }
            self.positions.insert((topic.clone(), partition), end);
            self.fresh_from.insert((topic.clone(), partition), end);
        }
        Ok(())
    }

    /// Lets go of revoked partitions (after the caller committed).
    pub fn release(&mut self, revoked: &TopicPartitionList, still_assigned: &TopicPartitionList) {
        let kept: HashSet<i32> = still_assigned
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect();
        for element in revoked.elements() {
            let key = (element.topic().to_owned(), element.partition());
            self.positions.remove(&key);
            self.committed.remove(&key);
            self.fresh_from.remove(&key);
            if !kept.contains(&element.partition())
                && self.tasks.remove(&element.partition()).is_some()
            {
                self.checkpointer
                    .settle(element.partition(), RELEASE_UPLOAD_WAIT);
                tracing::info!(partition = element.partition(), "partition released");
                self.metrics.watermark_delay_seconds.remove(&TaskLabels {
                    partition: element.partition(),
                });
            }
        }
        self.fence_redis_writes();
        self.metrics
            .assigned_partitions
            .set(self.tasks.len() as i64);
        if self.tasks.is_empty() {
            // Nothing left to replay: a failed transaction waits on nothing.
            self.liveness.done();
        }
    }

    /// Tells the Redis writer which partitions the writes from now on belong to.
    fn fence_redis_writes(&self) {
        if let Some(redis) = &self.redis
            && let Err(err) = redis.assign(self.tasks.keys().copied().collect())
        {
            // The next wait reports the writer gone, failing the transaction.
            tracing::warn!(%err, "telling the Redis writer the owned partitions");
        }
    }

    /// Checkpoints every partition when due (call right after a commit).
    pub fn checkpoint_if_due(&mut self, force: bool) {
        if self.txn_open || !(force || self.checkpointer.due()) {
            return;
        }
        self.checkpointer.checkpoint_all(self.tasks.values());
    }

    /// Refreshes the per-partition gauges (watermark delay, state size); lag comes from the
    /// consumer's statistics ([`RebalanceHandler`]).
    pub fn refresh_gauges(&self) {
        for state in self.tasks.values() {
            let labels = TaskLabels {
                partition: state.partition(),
            };
            if let Some(delay) = state.clock().delay() {
                self.metrics
                    .watermark_delay_seconds
                    .get_or_create(&labels)
                    .set(delay as f64 / 1000.0);
            }
            self.metrics
                .state_size_bytes
                .get_or_create(&labels)
                .set(i64::try_from(state.size_bytes()).unwrap_or(i64::MAX));
        }
    }

    pub fn wait_for_uploads(&self, limit: Duration) {
        self.checkpointer.wait_for_uploads(limit);
    }

    pub fn in_flight(&self) -> i32 {
        self.producer().in_flight_count()
    }
}

/// The consumer's callbacks: commit before partitions go, restore before they are processed,
/// and consumer lag from librdkafka's statistics.
pub struct RebalanceHandler<P: Processor> {
    pub core: Arc<Mutex<Core<P>>>,
    /// A fatal error met inside a callback, for the loop to return.
    pub failure: Arc<Mutex<Option<EngineError>>>,
    pub metrics: Arc<RuntimeMetrics>,
}

impl<P: Processor> ClientContext for RebalanceHandler<P> {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                if *partition < 0 || p.ls_offset < 0 {
                    continue;
                }
                // Our position (read_committed: against the last stable offset).
                let position = [p.app_offset, p.committed_offset, p.lo_offset]
                    .into_iter()
                    .find(|o| *o >= 0)
                    .unwrap_or(0);
                self.metrics
                    .consumer_lag
                    .get_or_create(&PartitionLabels {
                        topic: topic.clone(),
                        partition: *partition,
                    })
                    .set((p.ls_offset - position).max(0));
            }
        }
    }
}

impl<P: Processor> ConsumerContext for RebalanceHandler<P> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            let mut core = lock(&self.core);
            let group = consumer.group_metadata();
            let result = core.commit(group.as_ref());
            match result {
                Ok(_) => {
                    core.checkpoint_if_due(true);
                    let remaining = consumer.assignment().unwrap_or_default();
                    let mut still = TopicPartitionList::new();
                    for element in remaining.elements() {
                        if revoked
                            .find_partition(element.topic(), element.partition())
                            .is_none()
                        {
                            still.add_partition(element.topic(), element.partition());
                        }
                    }
                    core.release(revoked, &still);
                }
                Err(err) => *lock(&self.failure) = Some(err),
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assigned) => {
                tracing::info!(partitions = assigned.count(), "partitions assigned");
                self.metrics
                    .rebalances
                    .get_or_create(&KindLabels { kind: "assign" })
                    .inc();
                let mut core = lock(&self.core);
                if let Err(err) = core.acquire(consumer, assigned) {
                    self.metrics.restore_failures.inc();
                    *lock(&self.failure) = Some(err);
                }
            }
            Rebalance::Revoke(revoked) => {
                tracing::info!(partitions = revoked.count(), "partitions revoked");
                self.metrics
                    .rebalances
                    .get_or_create(&KindLabels { kind: "revoke" })
                    .inc();
            }
            Rebalance::Error(err) => tracing::error!(%err, "rebalance error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_errors_are_classified() {
        let produce = |code| kafka_class(&KafkaError::MessageProduction(code));
        assert_eq!(
            produce(RDKafkaErrorCode::MessageSizeTooLarge),
            FailureClass::Record
        );
        assert_eq!(produce(RDKafkaErrorCode::Fatal), FailureClass::Fatal);
        // An earlier record failed the transaction: abort, then see what was refused.
        assert_eq!(produce(RDKafkaErrorCode::State), FailureClass::Transient);
        assert_eq!(
            kafka_class(&KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)),
            FailureClass::Transient
        );
        let no_group = EngineError::NoGroupMetadata;
        assert_eq!(no_group.class(), Some(FailureClass::Transient));
        let broken = EngineError::CommitThread("panicked".into());
        assert_eq!(broken.class(), None, "the replica stops");
    }
}
