//! Closed user sessions (topic `sessions`).

use serde::{Deserialize, Serialize};

use super::ids::stable_id;
use crate::time::epoch_millis;
use crate::validate::{Validate, ValidationError, non_empty};

/// One closed session: a user's clicks with no gap longer than the inactivity gap (30 min by
/// default), in event time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionSummary {
    /// See [`SessionSummary::deterministic_id`].
    pub session_id: String,
    pub user_id: String,
    /// Event time of the first click.
    #[serde(with = "epoch_millis")]
    pub start_ts: i64,
    /// Event time of the last click.
    #[serde(with = "epoch_millis")]
    pub end_ts: i64,
    /// `end_ts - start_ts`.
    pub duration_ms: i64,
    pub event_count: u64,
    pub page_views: u64,
    pub product_views: u64,
    pub searches: u64,
    pub cart_adds: u64,
    pub cart_removes: u64,
    pub checkouts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_category: Option<String>,
    /// Distinct categories seen, in first-seen order.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Device of the last click that named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

impl SessionSummary {
    /// Stable session id: [`stable_id`] with domain `trendstream/session/v1` over `user_id`
    /// and `start_ts`. A closed session window is identified by its user and start, so a
    /// replay re-emits the same id.
    pub fn deterministic_id(user_id: &str, start_ts: i64) -> String {
        stable_id("trendstream/session/v1", &[user_id, &start_ts.to_string()])
    }
}

impl Validate for SessionSummary {
    fn validate(&self) -> Result<(), ValidationError> {
        non_empty("session_id", &self.session_id)?;
        non_empty("user_id", &self.user_id)?;
        if self.end_ts < self.start_ts {
            return Err(ValidationError::new(
                "end_ts",
                format!(
                    "must not be before start_ts ({} < {})",
                    self.end_ts, self.start_ts
                ),
            ));
        }
        Ok(())
    }
}
