//! What the processors publish: session summaries, fraud alerts, revenue windows and live user
//! features. Written to Kafka topics and Redis, read back by feature-api.

mod features;
mod fraud;
mod ids;
mod revenue;
mod session;

pub use features::UserFeatures;
pub use fraud::{FraudAlert, Severity};
pub use ids::stable_id;
pub use revenue::{CategoryRevenue, RevenueWindow};
pub use session::SessionSummary;
