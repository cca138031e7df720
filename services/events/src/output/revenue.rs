//! Revenue per tumbling window (topic `revenue-metrics`, Redis revenue series).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::money::{Currency, Money};
use crate::time::epoch_millis;
use crate::validate::{Validate, ValidationError, window_order};

/// Totals of one category within a window.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CategoryRevenue {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5000.00"))]
    pub gmv: Money,
    pub orders: i64,
}

/// GMV of one event-time window `[window_start, window_end)`.
///
/// Cancellations and refunds subtract, so `gmv` and `orders` can be lower than the placed
/// totals, and even negative for a window that holds mostly reversals of earlier orders;
/// hence signed `orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevenueWindow {
    #[serde(with = "epoch_millis")]
    pub window_start: i64,
    #[serde(with = "epoch_millis")]
    pub window_end: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5000.00"))]
    pub gmv: Money,
    pub orders: i64,
    /// See [`RevenueWindow::average_order_value`].
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5000.00"))]
    pub average_order_value: Money,
    /// Keyed by category; a `BTreeMap` so the JSON is byte-identical on replay.
    #[serde(default)]
    pub per_category: BTreeMap<String, CategoryRevenue>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "TRY"))]
    pub currency: Currency,
}

impl RevenueWindow {
    /// A window with its average order value derived from `gmv` and `orders`.
    pub fn new(
        window_start: i64,
        window_end: i64,
        currency: Currency,
        gmv: Money,
        orders: i64,
        per_category: BTreeMap<String, CategoryRevenue>,
    ) -> Self {
        Self {
            window_start,
            window_end,
            gmv,
            orders,
            average_order_value: Self::average_order_value(gmv, orders),
            per_category,
            currency,
        }
    }

    /// `gmv / orders` rounded to 2 decimal places half-to-even (banker's rounding: no upward
    /// bias when many windows are summed or averaged later). Zero when `orders <= 0`: with no
    /// net orders there is no meaningful average, and a division by zero or a negative count
    /// must not reach a dashboard.
    pub fn average_order_value(gmv: Money, orders: i64) -> Money {
        if orders <= 0 {
            return Money::ZERO;
        }
        // |gmv / orders| <= |gmv| for orders >= 1, so the division cannot overflow.
        gmv.checked_div_count(orders).unwrap_or(Money::ZERO)
    }
}

impl Validate for RevenueWindow {
    fn validate(&self) -> Result<(), ValidationError> {
        window_order(self.window_start, self.window_end)
    }
}
