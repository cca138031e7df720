//! `orders` rows to canonical [`OrderEvent`]s.
//!
//! Columns read: `id`, `user_id`, `status` (placed, paid, cancelled, refunded), `amount`
//! (decimal), `currency` (default TRY), `updated_at`/`created_at` (event time). Mapping:
//!
//! | change | event |
//! | --- | --- |
//! | `c` create, `r` snapshot read | the row's status (normally `placed`) |
//! | `u` update, status changed (or `before` unknown) | the new status: `cancelled`/`refunded` reverse revenue |
//! | `u` update, same status | nothing (not a status change) |
//! | `d` delete of a placed or paid order | `cancelled`, from `before`, at the commit time |
//! | `d` delete of a cancelled or refunded order | nothing (already reversed) |
//!
//! A delete needs the old row (`REPLICA IDENTITY FULL`, as `sql/ecommerce.sql` sets); a delete
//! carrying only the key cannot say whose order or how much, so it is rejected to the DLQ.

use crate::error::MapError;
use trendstream_events::debezium::{ChangeRecord, Image, Op};
use trendstream_events::{Currency, Money, OrderEvent, OrderStatus, Validate};

use crate::columns::{self, DecodeSettings};

/// The canonical event for an `orders` change, or `None` when the change is not a status change.
pub fn order_event(
    record: &ChangeRecord,
    settings: &DecodeSettings,
) -> Result<Option<OrderEvent>, MapError> {
    let event = &record.event;
    let (image, status) = match event.op {
        Op::Create | Op::Read => (Image::After, status(record, Image::After)?),
        Op::Update => {
            let after = status(record, Image::After)?;
            let before = match event.before.as_ref() {
                Some(row) if row.contains_key("status") => Some(status(record, Image::Before)?),
                _ => None,
            };
            if before == Some(after) {
                return Ok(None);
            }
            (Image::After, after)
        }
        Op::Delete => {
            // With the default replica identity `before` holds only the key (other columns null).
            let full_row = event
                .before
                .as_ref()
                .is_some_and(|row| row.get("user_id").is_some_and(|v| !v.is_null()));
            if !full_row {
                return Err(MapError::Invalid(
                    "payload.before: a delete of an order needs the old row (set REPLICA IDENTITY FULL on orders)"
                        .into(),
                ));
            }
            match status(record, Image::Before)? {
                OrderStatus::Placed | OrderStatus::Paid => (Image::Before, OrderStatus::Cancelled),
                OrderStatus::Cancelled | OrderStatus::Refunded => return Ok(None),
            }
        }
        Op::Truncate | Op::Message => return Ok(None),
    };
    let order_id = columns::required_text(record, image, "id")?;
    let user_id = columns::required_text(record, image, "user_id")?;
    let amount = columns::decimal(record, image, "amount", settings)?.ok_or_else(|| {
        MapError::Invalid(format!(
            "payload.{}.amount: missing or null",
            columns::image_name(image)
        ))
    })?;
    let currency = match columns::text(record, image, "currency")? {
        None => Currency::default(),
        Some(code) => code.trim().parse().map_err(|err| {
            MapError::Invalid(format!(
                "payload.{}.currency: {err}",
                columns::image_name(image)
            ))
        })?,
    };
    // Through the text form, so the contract's range check applies (the scale is kept).
    let amount: Money = amount.to_string().parse().map_err(|err| {
        MapError::Invalid(format!(
            "payload.{}.amount: {err}",
            columns::image_name(image)
        ))
    })?;
    // A delete happened at its commit, not at the row's last update.
    let time_image = (event.op != Op::Delete).then_some(image);
    let ts = columns::event_time(record, time_image, settings)?;
    let order = OrderEvent {
        event_id: format!(
            "cdc:{order_id}:{}:{}",
            status.as_str(),
            columns::position(record)
        ),
        order_id,
        user_id,
        status,
        amount,
        currency,
        items: Vec::new(),
        ts,
    };
    order
        .validate()
        .map_err(|err| MapError::Invalid(format!("order event: {err}")))?;
    Ok(Some(order))
}

fn status(record: &ChangeRecord, image: Image) -> Result<OrderStatus, MapError> {
    let text = columns::required_text(record, image, "status")?;
    OrderStatus::from_wire(&text).ok_or_else(|| {
        MapError::Invalid(format!(
            "payload.{}.status: unknown order status {text:?} (expected placed, paid, cancelled or refunded)",
            columns::image_name(image)
        ))
    })
}
