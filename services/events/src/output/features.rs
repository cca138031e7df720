//! Live per-user features (Redis, served by feature-api).

use serde::{Deserialize, Serialize};

use crate::time::epoch_millis;
use crate::validate::{Validate, ValidationError, non_empty};

/// What session-aggregator knows about a user right now. "Current session" fields describe
/// the user's open session with the latest start (zero when none is open); the rest cover the
/// user's closed sessions. docs/processors.md has the exact rules.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserFeatures {
    pub user_id: String,
    /// Last minus first event time of the open session.
    pub current_session_length_ms: i64,
    /// Clicks in the open session.
    pub session_events: u64,
    /// Page and product views in the open session.
    pub views: u64,
    /// `add_to_cart` clicks in the open session.
    pub cart_adds: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_category: Option<String>,
    /// Closed sessions of this user.
    pub session_count: u64,
    /// Mean duration of the user's closed sessions, whole milliseconds.
    pub avg_session_duration_ms: i64,
    /// Largest event time of the user's on-time clicks.
    #[serde(with = "epoch_millis")]
    pub updated_ts: i64,
}

impl Validate for UserFeatures {
    fn validate(&self) -> Result<(), ValidationError> {
        non_empty("user_id", &self.user_id)
    }
}
