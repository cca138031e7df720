//! `order_items` rows: checked, not emitted.
//!
//! Debezium writes order lines to their own topic, keyed by `(order_id, line_no)`, so a line and
//! its order are on different partitions and cannot be joined in partition-local state without
//! a repartition stage. Canonical order events from CDC therefore carry `items: []` (the
//! contract allows it) and revenue per category is not available from CDC yet. The lines are
//! still decoded so that a malformed one reaches the DLQ instead of passing unnoticed.

use crate::error::MapError;
use trendstream_events::debezium::{ChangeRecord, Image, Op};

use crate::columns::{self, DecodeSettings};

/// Checks an `order_items` change: `order_id`, `product_id`, a positive `quantity` and a
/// decodable `unit_price` in the row image the op carries.
pub fn check_order_item(record: &ChangeRecord, settings: &DecodeSettings) -> Result<(), MapError> {
    let image = match record.event.op {
        Op::Create | Op::Read | Op::Update => Image::After,
        Op::Delete => Image::Before,
        Op::Truncate | Op::Message => return Ok(()),
    };
    columns::required_text(record, image, "order_id")?;
    if record.event.op == Op::Delete {
        return Ok(());
    }
    columns::required_text(record, image, "product_id")?;
    match columns::integer(record, image, "quantity")? {
        Some(q) if q > 0 => {}
        other => {
            return Err(MapError::Invalid(format!(
                "payload.after.quantity: must be a positive integer, got {other:?}"
            )));
        }
    }
    columns::decimal(record, image, "unit_price", settings)?
        .ok_or_else(|| MapError::Invalid("payload.after.unit_price: missing or null".into()))?;
    Ok(())
}
