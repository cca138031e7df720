//! One Debezium record to the canonical records it stands for (pure; no I/O).
//!
//! The table is `source.table` when the event names it, else the last segment of the topic
//! (`<prefix>.<schema>.<table>`), so topic-routing SMTs that rename topics still work.
//! Tables other than orders, order_items and inventory (users, say) produce nothing.

use crate::error::MapError;
use trendstream_events::debezium::{Decoded, decode_change, decode_transaction_metadata};
use trendstream_events::{InventoryChange, OrderEvent};

use crate::columns::DecodeSettings;
use crate::inventory::inventory_change;
use crate::order_items::check_order_item;
use crate::orders::order_event;

/// A canonical record to emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Order(OrderEvent),
    Inventory(InventoryChange),
}

/// What one input record maps to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mapped {
    pub outputs: Vec<Output>,
    /// The change's event time; `None` for tombstones and ignored records.
    pub event_time: Option<i64>,
}

/// The source tables cdc-processor understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Orders,
    OrderItems,
    Inventory,
}

impl Table {
    pub fn from_name(name: &str) -> Option<Table> {
        match name {
            "orders" => Some(Table::Orders),
            "order_items" => Some(Table::OrderItems),
            "inventory" => Some(Table::Inventory),
            _ => None,
        }
    }
}

/// Decodes and maps one record of a Debezium topic. Errors go to the DLQ with their message.
pub fn map_record(
    topic: &str,
    value: Option<&[u8]>,
    settings: &DecodeSettings,
) -> Result<Mapped, MapError> {
    // `<prefix>.transaction` (provide.transaction.metadata=true): BEGIN/END markers. Every
    // change is mapped on its own, so they carry nothing to emit; malformed ones are still
    // dead-lettered.
    if topic.ends_with(".transaction") {
        decode_transaction_metadata(value)
            .map_err(|err| MapError::Decode(format!("Debezium transaction metadata: {err}")))?;
        return Ok(Mapped::default());
    }
    let record = match decode_change(value)
        .map_err(|err| MapError::Decode(format!("Debezium change event: {err}")))?
    {
        // Debezium's tombstone after a delete: the delete event itself was already mapped.
        Decoded::Tombstone => return Ok(Mapped::default()),
        Decoded::Change(record) => record,
    };
    let table_name = record
        .event
        .source
        .table
        .as_deref()
        .unwrap_or_else(|| topic.rsplit('.').next().unwrap_or(topic));
    let Some(table) = Table::from_name(table_name) else {
        tracing::debug!(
            topic,
            table = table_name,
            "change of a table without a mapping ignored"
        );
        return Ok(Mapped::default());
    };
    let outputs = match table {
        Table::Orders => order_event(&record, settings)?.map(Output::Order),
        Table::Inventory => inventory_change(&record, settings)?.map(Output::Inventory),
        Table::OrderItems => {
            check_order_item(&record, settings)?;
            None
        }
    };
    let event_time = outputs.as_ref().map(|out| match out {
        Output::Order(o) => o.ts,
        Output::Inventory(i) => i.ts,
    });
    Ok(Mapped {
        outputs: outputs.into_iter().collect(),
        event_time,
    })
}
