//! Inventory changes (topic `inventory-changes`, keyed by `sku`), produced by cdc-processor from
//! the `inventory` table's change events.
//!
//! One event per captured change of a stock row. `quantity` is the stock after the change (0 for
//! a deleted row); `previous_quantity` is the stock before it when the change event carried the
//! old row (updates with `REPLICA IDENTITY FULL`, deletes), so consumers can compute deltas
//! without keeping state.

use serde::{Deserialize, Serialize};

use crate::time::epoch_millis;
use crate::validate::{Validate, ValidationError, non_empty, non_negative_ts};
use crate::wire_enum::wire_enum;

wire_enum! {
    /// What happened to the stock row.
    pub enum InventoryChangeKind {
        /// The row as read by a snapshot (initial state, not a change).
        Snapshot => "snapshot",
        Created => "created",
        Updated => "updated",
        Deleted => "deleted",
    }
}

/// A change of one SKU's stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryChange {
    /// Unique per change; deterministic from the source position, so a replay repeats it.
    pub event_id: String,
    pub sku: String,
    pub change: InventoryChangeKind,
    /// Units in stock after the change (0 after a delete).
    pub quantity: i64,
    /// Units in stock before the change, when the change event carried the old row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_quantity: Option<i64>,
    /// Event time (the change's commit time in the database), epoch milliseconds.
    #[serde(with = "epoch_millis")]
    pub ts: i64,
}

impl InventoryChange {
    /// `quantity - previous_quantity`, when the previous quantity is known.
    pub fn delta(&self) -> Option<i64> {
        self.previous_quantity
            .and_then(|prev| self.quantity.checked_sub(prev))
    }
}

impl Validate for InventoryChange {
    fn validate(&self) -> Result<(), ValidationError> {
        non_empty("event_id", &self.event_id)?;
        non_empty("sku", &self.sku)?;
        non_negative_ts("ts", self.ts)
    }
}
