//! The API a processor is written against.
//!
//! A processor is a pure function of (state, event, event time) to outputs, plus timer
//! callbacks. It never talks to Kafka, RocksDB or Redis: it reads and writes its partition's
//! state through [`Context`], registers event-time timers, and emits records and idempotent Redis
//! writes; the runtime makes all of that exactly-once. Because a processor holds no state of its
//! own, replaying the same input after a crash gives the same outputs.

use crate::state::{PartitionState, StateError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use trendstream_events::feature_store::WriteOp;

/// One input record as the processor sees it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    /// The Kafka record timestamp (ms), when the producer set one.
    pub timestamp: Option<i64>,
}

/// An event-time timer: fires once the partition's watermark reaches `time`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timer {
    pub time: i64,
    pub key: String,
}

/// Why a record could not be processed. Record errors send the record to the dead-letter
/// topic and processing continues; state errors stop the replica (its partitions move).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot decode record: {0}")]
    Decode(String),
    #[error("invalid record: {0}")]
    Invalid(String),
    #[error(transparent)]
    State(#[from] StateError),
}

impl ProcessError {
    /// True when the record is at fault (dead-letter it), false when the replica is.
    pub fn is_record_error(&self) -> bool {
        !matches!(self, ProcessError::State(_))
    }
}

/// An idempotent Redis command (its words): replaying it leaves Redis as it was after the first
/// time. Processors build them with the feature-store layout
/// ([`trendstream_events::feature_store`]), whose `WriteOp`s convert into this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisWrite(pub Vec<String>);

impl RedisWrite {
    /// `SET key value`.
    pub fn set(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self(vec!["SET".into(), key.into(), value.into()])
    }
}

impl From<WriteOp> for RedisWrite {
    fn from(op: WriteOp) -> Self {
        Self(op.args())
    }
}

/// A record for a Kafka topic, produced in the current transaction.
#[derive(Debug, Clone)]
pub struct OutputRecord {
    pub topic: Option<String>,
    /// A fixed partition; `None` partitions by key.
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// What a processor's callbacks produced, drained by the runtime after each call.
#[derive(Debug, Default)]
pub struct Emitted {
    pub records: Vec<OutputRecord>,
    pub redis: Vec<RedisWrite>,
    /// Set when the current input record is late; the runtime forwards it to the late topic.
    pub late: Option<String>,
}

/// The processor's view of its partition: state, timers, event time and outputs.
pub struct Context<'a> {
    pub(crate) state: &'a mut PartitionState,
    pub(crate) emitted: &'a mut Emitted,
    pub(crate) allowed_lateness: i64,
}

impl Context<'_> {
    /// The input partition this call belongs to (the task).
    pub fn partition(&self) -> i32 {
        self.state.partition()
    }

    /// The partition's current watermark.
    pub fn watermark(&self) -> i64 {
        self.state.clock().watermark
    }

    pub fn allowed_lateness(&self) -> i64 {
        self.allowed_lateness
    }

    /// Reads `key` from `store`.
    pub fn get<V: DeserializeOwned>(
        &self,
        store: &str,
        key: &str,
    ) -> Result<Option<V>, StateError> {
        self.state.get(store, key)
    }

    /// Writes `key` in `store` (and, at commit, to the store's changelog).
    pub fn put<V: Serialize>(
        &mut self,
        store: &str,
        key: &str,
        value: &V,
    ) -> Result<(), StateError> {
        self.state.put(store, key, value)
    }

    pub fn delete(&mut self, store: &str, key: &str) -> Result<(), StateError> {
        self.state.delete(store, key)
    }

    /// Fires [`Processor::on_timer`] once the watermark reaches `time`. Registering the same
    /// (time, key) twice is one timer.
    pub fn set_timer(&mut self, time: i64, key: &str) -> Result<(), StateError> {
        self.state.set_timer(Timer {
            time,
            key: key.to_owned(),
        })
    }

    pub fn delete_timer(&mut self, time: i64, key: &str) -> Result<(), StateError> {
        self.state.delete_timer(&Timer {
            time,
            key: key.to_owned(),
        })
    }

    /// Emits a JSON record to the job's output topic.
    pub fn emit<T: Serialize>(&mut self, key: &str, value: &T) -> Result<(), ProcessError> {
        self.emit_to(None, key, value)
    }

    /// Emits a JSON record to `topic` (or the output topic when `None`).
    pub fn emit_to<T: Serialize>(
        &mut self,
        topic: Option<&str>,
        key: &str,
        value: &T,
    ) -> Result<(), ProcessError> {
        let payload = serde_json::to_vec(value)
            .map_err(|err| ProcessError::Invalid(format!("cannot encode output: {err}")))?;
        self.emitted.records.push(OutputRecord {
            topic: topic.map(str::to_owned),
            partition: None,
            key: Some(key.as_bytes().to_vec()),
            payload,
        });
        Ok(())
    }

    /// Emits a JSON record to a fixed partition of `topic` (e.g. an internal topic whose one
    /// partition gathers a global aggregate).
    pub fn emit_to_partition<T: Serialize>(
        &mut self,
        topic: &str,
        partition: i32,
        key: &str,
        value: &T,
    ) -> Result<(), ProcessError> {
        self.emit_to(Some(topic), key, value)?;
        if let Some(last) = self.emitted.records.last_mut() {
            last.partition = Some(partition);
        }
        Ok(())
    }

    /// Sends the current input record to the late topic, with `reason` in its headers.
    pub fn late(&mut self, reason: impl Into<String>) {
        self.emitted.late = Some(reason.into());
    }

    /// Queues an idempotent Redis write; it is applied before the transaction commits, so a
    /// crash replays it rather than loses it.
    pub fn redis(&mut self, write: impl Into<RedisWrite>) {
        self.emitted.redis.push(write.into());
    }
}

/// A stream processor: decoding, event time, per-record logic and timer callbacks.
pub trait Processor: Send + 'static {
    type Event;

    /// The service name: metrics, DLQ topic `dlq.<service>`.
    fn service(&self) -> &'static str;

    /// The state stores this processor uses; each gets a RocksDB column family and a changelog.
    fn stores(&self) -> &'static [&'static str];

    /// Topics the processor feeds back to itself (a repartition stage, as Kafka Streams has):
    /// created with the input partition count before subscribing, and consumed as inputs.
    fn internal_topics(&self) -> Vec<String> {
        Vec::new()
    }

    /// Decodes a record; an error sends it to the dead-letter topic.
    fn decode(&self, record: &Record<'_>) -> Result<Self::Event, ProcessError>;

    /// The event's event time (ms since the epoch).
    fn event_time(&self, event: &Self::Event) -> i64;

    fn process(&self, ctx: &mut Context<'_>, event: Self::Event) -> Result<(), ProcessError>;

    /// Called for each timer once the watermark passes its time, in time order.
    fn on_timer(&self, ctx: &mut Context<'_>, timer: Timer) -> Result<(), ProcessError> {
        let _ = (ctx, timer);
        Ok(())
    }
}
