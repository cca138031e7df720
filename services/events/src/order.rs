//! Order events (topic `orders`, keyed by `user_id`).
//!
//! One event per status change of an order. Amounts are always non-negative: the sign of a
//! revenue effect is carried by `status`, not by the amount. A refund is an event with status
//! `refunded` and the (positive) refunded amount; a cancellation carries the order's amount.
//! Revenue subtracts both. Keeping amounts unsigned means a producer cannot double-negate.

use serde::{Deserialize, Serialize};

use crate::money::{Currency, Money};
use crate::time::epoch_millis;
use crate::validate::{Validate, ValidationError, non_empty, non_negative_money, non_negative_ts};
use crate::wire_enum::wire_enum;

wire_enum! {
    /// Lifecycle state an order event reports.
    pub enum OrderStatus {
        Placed => "placed",
        Paid => "paid",
        Cancelled => "cancelled",
        Refunded => "refunded",
    }
}

impl OrderStatus {
    /// True for statuses whose amount is taken back out of revenue.
    pub const fn is_reversal(self) -> bool {
        matches!(self, Self::Cancelled | Self::Refunded)
    }
}

/// One order line. `unit_price` is in the order's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    pub product_id: String,
    pub category: String,
    /// At least 1.
    pub quantity: u32,
    pub unit_price: Money,
}

/// A status change of an order.
///
/// `amount` is the order total as charged; it is not required to equal the sum of the items
/// (discounts, shipping). `items` may be empty, e.g. for a cancellation captured from a table
/// that only records the status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEvent {
    /// Unique per event; dedup and dead-letter tracing.
    pub event_id: String,
    pub order_id: String,
    pub user_id: String,
    pub status: OrderStatus,
    pub amount: Money,
    /// Defaults to TRY when absent.
    #[serde(default)]
    pub currency: Currency,
    #[serde(default)]
    pub items: Vec<OrderItem>,
    /// Event time, epoch milliseconds.
    #[serde(with = "epoch_millis")]
    pub ts: i64,
}

impl Validate for OrderEvent {
    fn validate(&self) -> Result<(), ValidationError> {
        non_empty("event_id", &self.event_id)?;
        non_empty("order_id", &self.order_id)?;
        non_empty("user_id", &self.user_id)?;
        non_negative_money("amount", self.amount)?;
        for (i, item) in self.items.iter().enumerate() {
            non_empty(&format!("items[{i}].product_id"), &item.product_id)?;
            if item.quantity == 0 {
                return Err(ValidationError::new(
                    format!("items[{i}].quantity"),
                    "must be greater than 0",
                ));
            }
            non_negative_money(&format!("items[{i}].unit_price"), item.unit_price)?;
        }
        non_negative_ts("ts", self.ts)
    }
}
