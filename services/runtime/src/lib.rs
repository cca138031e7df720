//! The streaming runtime shared by every TrendStream processor.
//!
//! The Kafka source/sink, partition-owned state, exactly-once commits, checkpoints and event
//! time land with the runtime issue; what is here is what every binary needs from day one:
//! common service flags and logging set-up.

pub mod service;
pub mod telemetry;
