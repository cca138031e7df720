//! Fraud alerts (topic `fraud-alerts`, Redis alert lists).

use serde::{Deserialize, Serialize};

use super::ids::stable_id;
use crate::money::{Currency, Money};
use crate::time::epoch_millis;
use crate::validate::{Validate, ValidationError, non_empty, window_order};
use crate::wire_enum::wire_enum;

wire_enum! {
    /// How urgent an alert is; rules configure it. Defaults to `medium` when absent.
    #[derive(Default)]
    pub enum Severity {
        Low => "low",
        #[default]
        Medium => "medium",
        High => "high",
        Critical => "critical",
    }
}

/// A rule matched for one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FraudAlert {
    /// [`FraudAlert::deterministic_id`] of the inputs, so a replay after a crash rewrites the
    /// same alert instead of adding a duplicate.
    pub alert_id: String,
    /// Rule name, e.g. `RAPID_ORDERS`. A string, not an enum: rules are data, configured per
    /// StreamJob.
    pub rule: String,
    pub user_id: String,
    /// The orders that matched, in the order the rule saw them (event time).
    pub order_ids: Vec<String>,
    #[serde(with = "epoch_millis")]
    pub window_start: i64,
    #[serde(with = "epoch_millis")]
    pub window_end: i64,
    /// Event time of the event that completed the match.
    #[serde(with = "epoch_millis")]
    pub ts: i64,
    #[serde(default)]
    pub severity: Severity,
    /// Sum of the matched orders' amounts.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5000.00"))]
    pub total_amount: Money,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "TRY"))]
    pub currency: Currency,
    /// Human-readable explanation, e.g. "3 orders in 4m12s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

impl FraudAlert {
    /// Stable alert id: [`stable_id`] with domain `trendstream/fraud-alert/v1` over `rule`,
    /// `user_id`, the number of order ids, each order id, and `window_start` in decimal.
    ///
    /// The order of `order_ids` is part of the identity: pass them in the order the rule
    /// matched them (event-time order), which is deterministic on replay. Sorting them here
    /// would make two different sequences (relevant for sequence rules) share an id.
    pub fn deterministic_id<S: AsRef<str>>(
        rule: &str,
        user_id: &str,
        order_ids: &[S],
        window_start: i64,
    ) -> String {
        let count = order_ids.len().to_string();
        let start = window_start.to_string();
        let mut parts: Vec<&str> = Vec::with_capacity(order_ids.len().saturating_add(4));
        parts.push(rule);
        parts.push(user_id);
        parts.push(&count);
        parts.extend(order_ids.iter().map(AsRef::as_ref));
        parts.push(&start);
        stable_id("trendstream/fraud-alert/v1", &parts)
    }

    /// The id this alert's own fields hash to (to check or fill `alert_id`).
    pub fn expected_id(&self) -> String {
        Self::deterministic_id(
            &self.rule,
            &self.user_id,
            &self.order_ids,
            self.window_start,
        )
    }
}

impl Validate for FraudAlert {
    fn validate(&self) -> Result<(), ValidationError> {
        non_empty("alert_id", &self.alert_id)?;
        non_empty("rule", &self.rule)?;
        non_empty("user_id", &self.user_id)?;
        for (i, id) in self.order_ids.iter().enumerate() {
            non_empty(&format!("order_ids[{i}]"), id)?;
        }
        window_order(self.window_start, self.window_end)
    }
}
