//! The streaming runtime every TrendStream processor stands on (DESIGN.md "Runtime semantics").
//!
//! A processor implements [`Processor`]: a pure function of (state, event, event time) to
//! outputs, plus timer callbacks. [`run`] drives it: a Kafka consumer in a consumer group, one
//! RocksDB state per input partition with a changelog topic per store, outputs + changelog +
//! input offsets committed in one Kafka transaction, checkpoints uploaded to GCS, per-partition
//! watermarks, a dead-letter topic, `/metrics` and health probes. See [`engine`] for how
//! partitions are owned and how a transaction is made.

pub mod changelog;
pub mod checkpoints;
pub mod config;
pub mod engine;
pub mod metrics;
pub mod processor;
pub mod recovery;
pub mod redis_sink;
pub mod rejection;
pub mod runner;
pub mod state;
pub mod upgrade;
pub mod watermark;
pub mod window;

pub use config::RuntimeOptions;
pub use processor::{Context, ProcessError, Processor, Record, RedisWrite, Timer};
pub use runner::{run, run_service};
