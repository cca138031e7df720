//! cdc-processor: PostgreSQL changes to the canonical `orders` and `inventory-changes` streams.
//!
//! Two halves:
//! - the processor ([`processor`], binary `cdc-processor`): reads Debezium change topics
//!   (`<prefix>.public.orders`, `order_items`, `inventory`) on the streaming runtime and maps
//!   each change to canonical records ([`mapping`]; pure, unit-tested);
//! - the native capture ([`capture`], binary `pg-capture`): reads PostgreSQL logical
//!   replication (pgoutput) and writes Debezium-compatible change events to those topics, for
//!   users without Kafka Connect.
//!
//! The exact semantics are in `docs/cdc.md`.

pub mod capture;
pub mod columns;
#[cfg(feature = "runtime")]
pub mod config;
pub mod error;
pub mod inventory;
pub mod mapping;
pub mod order_items;
pub mod orders;
#[cfg(feature = "runtime")]
pub mod processor;
