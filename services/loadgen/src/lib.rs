//! loadgen: a seeded traffic simulator for TrendStream.
//!
//! Generation is pure — [`generator::Generator`] turns a seed and settings into the exact
//! sequence of records (topic, partition, key, payload) — and separate from I/O: the Kafka
//! writer ([`kafka`]), the event file ([`events_file`]) and the pacing ([`rate`]) only move
//! those records. So the same seed gives a byte-identical event file, with or without Kafka.

pub mod app;
pub mod config;
pub mod events_file;
pub mod generator;
pub mod kafka;
pub mod poison;
pub mod postgres;
pub mod rate;
pub mod record;
pub mod rng;
pub mod sim;
pub mod summary;
