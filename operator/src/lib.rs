//! The TrendStream operator: the `StreamJob` CRD, the builders of its children, and the
//! reconciler that applies them and reports status.

pub mod builders;
pub mod controller;
pub mod crd;
pub use trendstream_service::duration;
pub mod kafka;
pub mod lag;
pub mod metrics;
pub mod parallelism;
pub mod rollback;
pub mod rollout;
pub mod runner;
pub mod status;
