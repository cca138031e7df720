//! pg-capture: PostgreSQL logical replication (pgoutput) to Debezium-compatible change topics,
//! for users without Kafka Connect. See `docs/cdc.md` for the exact semantics and
//! [`postgres`] for why it reads the slot through the SQL interface.
//!
//! - [`pgoutput`]: the plugin's message format (pure);
//! - [`values`]: PostgreSQL text values to Debezium's JSON encodings (pure);
//! - [`envelope`]: Debezium key/value records (pure);
//! - [`offsets`]: the position stored in Kafka, and snapshot visibility (pure);
//! - [`postgres`], [`kafka`]: the two sides' I/O; [`run`]: the loop.

#[cfg(feature = "runtime")]
pub mod config;
pub mod envelope;
#[cfg(feature = "runtime")]
pub mod kafka;
pub mod lsn;
pub mod offsets;
pub mod pgoutput;
#[cfg(feature = "runtime")]
pub mod postgres;
#[cfg(feature = "runtime")]
pub mod run;
pub mod values;
