//! What every TrendStream binary shares, kept apart from the streaming runtime so that
//! light binaries (operator, feature-api, loadgen) don't build Kafka and RocksDB:
//! common flags read from the command line or the environment, and logging set-up.

pub mod config;
pub mod telemetry;
