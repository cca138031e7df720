//! The runtime side: decode with [`map_record`], emit each canonical record to the partition
//! Kafka's default partitioner (murmur2 of the key, as the Java client and loadgen use) gives
//! its key, so consumers keyed by user or SKU see one key's records on one partition, in the
//! order of the source changes.
//!
//! Order within a key: Debezium keys a table's topic by primary key, so all changes of one order
//! (or SKU) are on one input partition and are processed in source order; an order keeps its
//! `user_id`, so they all land on one output partition, in that order. No state, no timers:
//! every change is emitted when it is read (never "late"), exactly once by the runtime's
//! transactions.

use trendstream_events::partitioning::partition_for;
use trendstream_runtime::{Context, ProcessError, Processor, Record};

use crate::columns::DecodeSettings;
use crate::error::MapError;
use crate::mapping::{Mapped, Output, map_record};

/// The runtime's record error of the same kind and message (the runtime dead-letters it).
fn record_error(err: MapError) -> ProcessError {
    match err {
        MapError::Decode(reason) => ProcessError::Decode(reason),
        MapError::Invalid(reason) => ProcessError::Invalid(reason),
    }
}

/// Where the canonical records go.
#[derive(Debug, Clone)]
pub struct OutputTopics {
    pub orders: String,
    pub orders_partitions: i32,
    pub inventory: String,
    pub inventory_partitions: i32,
}

/// The cdc-processor.
pub struct CdcProcessor {
    settings: DecodeSettings,
    outputs: OutputTopics,
}

impl CdcProcessor {
    pub fn new(settings: DecodeSettings, outputs: OutputTopics) -> Self {
        Self { settings, outputs }
    }
}

impl Processor for CdcProcessor {
    type Event = Mapped;

    fn service(&self) -> &'static str {
        "cdc-processor"
    }

    fn stores(&self) -> &'static [&'static str] {
        &[]
    }

    fn decode(&self, record: &Record<'_>) -> Result<Mapped, ProcessError> {
        map_record(record.topic, record.payload, &self.settings).map_err(record_error)
    }

    fn event_time(&self, event: &Mapped) -> i64 {
        // Tombstones and ignored tables carry no time; MIN never moves the watermark.
        event.event_time.unwrap_or(i64::MIN)
    }

    fn process(&self, ctx: &mut Context<'_>, event: Mapped) -> Result<(), ProcessError> {
        for output in event.outputs {
            match output {
                Output::Order(order) => {
                    let partition =
                        partition_for(order.user_id.as_bytes(), self.outputs.orders_partitions);
                    ctx.emit_to_partition(&self.outputs.orders, partition, &order.user_id, &order)?;
                }
                Output::Inventory(change) => {
                    let partition =
                        partition_for(change.sku.as_bytes(), self.outputs.inventory_partitions);
                    ctx.emit_to_partition(
                        &self.outputs.inventory,
                        partition,
                        &change.sku,
                        &change,
                    )?;
                }
            }
        }
        Ok(())
    }
}
