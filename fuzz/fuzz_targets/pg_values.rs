//! pg-capture's conversion of PostgreSQL text values to Debezium's encodings: any text for any
//! converted type converts or gives an error, never a panic; a numeric that converts reads back,
//! through cdc-processor's Debezium decoder, as the same value at the column's scale.
#![no_main]

use cdc_processor::capture::values::{ColumnType, oid};
use libfuzzer_sys::fuzz_target;
use rust_decimal::Decimal;
use std::str::FromStr;
use trendstream_events::debezium::decode_precise;

const TYPES: [u32; 10] = [
    oid::BOOL,
    oid::INT2,
    oid::INT4,
    oid::INT8,
    oid::FLOAT4,
    oid::FLOAT8,
    oid::DATE,
    oid::TIMESTAMP,
    oid::TIMESTAMPTZ,
    oid::NUMERIC,
];

fuzz_target!(|input: &[u8]| {
    let Some((&selector, text)) = input.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let type_oid = TYPES[usize::from(selector) % TYPES.len()];
    // numeric(12, s) for s in 0..=7, or unconstrained numeric.
    let scale = u32::from(selector >> 4) % 9;
    let type_modifier = if scale == 8 {
        -1
    } else {
        ((12 << 16) | scale as i32) + 4
    };
    let column = ColumnType {
        name: "c".into(),
        type_oid,
        type_modifier,
        optional: true,
    };
    let Ok(value) = column.convert(text) else {
        return;
    };
    if type_oid != oid::NUMERIC {
        return;
    }
    let parsed = Decimal::from_str(text).expect("a numeric that converts parses");
    let (encoded, column_scale) = match (&value, scale) {
        (serde_json::Value::String(base64), s) if s < 8 => (base64.clone(), s),
        (serde_json::Value::Object(object), 8) => (
            object["value"].as_str().expect("value is text").to_owned(),
            object["scale"].as_u64().expect("scale is a number") as u32,
        ),
        other => panic!("unexpected numeric encoding {other:?}"),
    };
    let decoded =
        decode_precise(&encoded, column_scale).expect("pg-capture's own encoding decodes");
    let mut expected = parsed;
    expected.rescale(column_scale);
    assert_eq!(decoded, expected, "{text:?} at scale {column_scale}");
    assert_eq!(decoded.scale(), column_scale, "{text:?}");
});
