//! fraud-detector: per-user complex event processing over orders and clickstream, in event time.
//!
//! - [`config`]: the binary's configuration (flags and environment) and its validation;
//! - [`rules`]: the rule model, the rule-file schema and its validation, the built-in rules;
//! - [`eval`]: the pure matcher over one user's events in event-time order;
//! - [`processor`]: the [`trendstream_runtime::Processor`] that buffers each user's events in
//!   partition state and runs the matcher when the watermark passes them.

#[cfg(feature = "runtime")]
pub mod config;
pub mod eval;
#[cfg(feature = "runtime")]
pub mod processor;
pub mod rules;
