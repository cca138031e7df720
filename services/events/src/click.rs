//! Clickstream events (topic `clickstream`, keyed by `user_id`).

use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::time::epoch_millis;
use crate::validate::{
    Validate, ValidationError, non_empty, non_empty_opt, non_negative_money, non_negative_ts,
};
use crate::wire_enum::wire_enum;

wire_enum! {
    /// What the user did. Unknown kinds are rejected (not ignored) so a producer typo shows up
    /// in the dead-letter queue rather than as silently missing counts.
    pub enum ClickEventType {
        PageView => "page_view",
        ProductView => "product_view",
        Search => "search",
        AddToCart => "add_to_cart",
        RemoveFromCart => "remove_from_cart",
        CheckoutStart => "checkout_start",
    }
}

/// One user interaction. Optional fields are omitted from the JSON when absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClickEvent {
    /// Unique per event; dedup and dead-letter tracing.
    pub event_id: String,
    pub user_id: String,
    /// The client's session hint. Only a hint: session-aggregator derives sessions from the
    /// inactivity gap in event time, not from this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub event_type: ClickEventType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Shown price of the product, in the platform currency (TRY).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Event time, epoch milliseconds.
    #[serde(with = "epoch_millis")]
    pub ts: i64,
}

impl Validate for ClickEvent {
    fn validate(&self) -> Result<(), ValidationError> {
        non_empty("event_id", &self.event_id)?;
        non_empty("user_id", &self.user_id)?;
        non_empty_opt("session_id", self.session_id.as_deref())?;
        non_empty_opt("product_id", self.product_id.as_deref())?;
        if let Some(price) = self.price {
            non_negative_money("price", price)?;
        }
        non_negative_ts("ts", self.ts)
    }
}
