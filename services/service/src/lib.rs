//! What every TrendStream binary shares, kept apart from the streaming runtime so that
//! light binaries (operator, feature-api, loadgen) don't build Kafka and RocksDB:
//! common flags read from the command line or the environment, logging set-up, durations, and
//! the operations endpoint (`/metrics`, `/health/*`).

pub mod config;
pub mod duration;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod metrics_text;
pub mod ops;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
pub mod signal;
pub mod telemetry;
