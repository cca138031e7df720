//! `inventory` rows to [`InventoryChange`]s (topic `inventory-changes`, keyed by `sku`).
//!
//! Columns read: `sku`, `quantity` (integer), `updated_at` (event time). Every create, update,
//! snapshot read and delete becomes one change; an update that leaves `quantity` as it was is
//! still reported (another column may matter to a consumer; the delta says 0). A delete needs
//! `sku` in `before` (always there: it is the primary key) and reports quantity 0.

use crate::error::MapError;
use trendstream_events::debezium::{ChangeRecord, Image, Op};
use trendstream_events::{InventoryChange, InventoryChangeKind, Validate};

use crate::columns::{self, DecodeSettings};

/// The inventory change for an `inventory` change event (`None` for truncates and messages).
pub fn inventory_change(
    record: &ChangeRecord,
    settings: &DecodeSettings,
) -> Result<Option<InventoryChange>, MapError> {
    let event = &record.event;
    let (kind, image) = match event.op {
        Op::Read => (InventoryChangeKind::Snapshot, Image::After),
        Op::Create => (InventoryChangeKind::Created, Image::After),
        Op::Update => (InventoryChangeKind::Updated, Image::After),
        Op::Delete => (InventoryChangeKind::Deleted, Image::Before),
        Op::Truncate | Op::Message => return Ok(None),
    };
    let sku = columns::required_text(record, image, "sku")?;
    let quantity = match kind {
        InventoryChangeKind::Deleted => 0,
        _ => columns::integer(record, image, "quantity")?
            .ok_or_else(|| MapError::Invalid("payload.after.quantity: missing or null".into()))?,
    };
    let previous_quantity = match kind {
        InventoryChangeKind::Created | InventoryChangeKind::Snapshot => None,
        InventoryChangeKind::Updated | InventoryChangeKind::Deleted => {
            columns::integer(record, Image::Before, "quantity")?
        }
    };
    let time_image = (event.op != Op::Delete).then_some(image);
    let ts = columns::event_time(record, time_image, settings)?;
    let change = InventoryChange {
        event_id: format!("cdc:{sku}:{}:{}", kind.as_str(), columns::position(record)),
        sku,
        change: kind,
        quantity,
        previous_quantity,
        ts,
    };
    change
        .validate()
        .map_err(|err| MapError::Invalid(format!("inventory change: {err}")))?;
    Ok(Some(change))
}
