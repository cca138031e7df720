//! Independent re-implementations of what the processors compute, from loadgen's event file
//! (docs/processors.md), for the e2e tests to compare the real outputs against.

pub mod fraud;
pub mod revenue;
pub mod sessions;

/// Kafka's default partitioner (murmur2 of the key), as loadgen computes it; hand-built test
/// data uses it to place records where the producer would.
pub use trendstream_events::partitioning::partition_for;
