//! cdc-processor's Debezium decoding and mapping: any record value on any of its topics, under
//! every decimal and timestamp setting, maps or gives a dead-letter reason, never a panic; every
//! canonical record it emits passes the contract's validation.
#![no_main]

use cdc_processor::columns::DecodeSettings;
use cdc_processor::mapping::{Output, map_record};
use libfuzzer_sys::fuzz_target;
use trendstream_events::Validate;
use trendstream_events::debezium::{DecimalMode, TimestampEncoding};

const TOPICS: [&str; 5] = [
    "pg.public.orders",
    "pg.public.order_items",
    "pg.public.inventory",
    "pg.public.users",
    "pg.transaction",
];

fuzz_target!(|input: &[u8]| {
    let Some((&selector, value)) = input.split_first() else {
        return;
    };
    let topic = TOPICS[usize::from(selector) % TOPICS.len()];
    let decimal_mode = match (selector >> 3) % 4 {
        0 => DecimalMode::Precise { scale: 2 },
        1 => DecimalMode::VariableScale,
        2 => DecimalMode::String,
        _ => DecimalMode::Double,
    };
    let integer_timestamps = match (selector >> 5) % 4 {
        0 => TimestampEncoding::Millis,
        1 => TimestampEncoding::Micros,
        2 => TimestampEncoding::Nanos,
        _ => TimestampEncoding::Zoned,
    };
    let settings = DecodeSettings {
        decimal_mode,
        integer_timestamps,
    };
    // An empty value is a tombstone, as Kafka delivers it.
    let value = (!value.is_empty()).then_some(value);
    if let Ok(mapped) = map_record(topic, value, &settings) {
        for output in mapped.outputs {
            match output {
                Output::Order(order) => {
                    assert!(
                        order.validate().is_ok(),
                        "emitted an invalid order: {order:?}"
                    )
                }
                Output::Inventory(change) => {
                    assert!(
                        change.validate().is_ok(),
                        "emitted an invalid change: {change:?}"
                    )
                }
            }
        }
    }
});
