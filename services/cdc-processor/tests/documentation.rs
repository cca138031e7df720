//! The change events of Debezium's PostgreSQL connector documentation, verbatim (the
//! `customers` example table; the documentation elides the update's and delete's schema, so
//! those are their payloads): they decode, and a table cdc-processor does not map produces
//! nothing rather than a dead letter.

use cdc_processor::columns::DecodeSettings;
use cdc_processor::mapping::map_record;
use trendstream_events::debezium::{Decoded, Op, decode_change};

const TOPIC: &str = "PostgreSQL_server.public.customers";

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn documented() -> Vec<(Op, Vec<u8>)> {
    let dir = env!("CARGO_MANIFEST_DIR");
    vec![
        // The create example (with its schema), kept with the events crate's tests.
        (
            Op::Create,
            read(&format!(
                "{dir}/../events/tests/fixtures/pg_customers_create.json"
            )),
        ),
        (
            Op::Update,
            read(&format!(
                "{dir}/tests/fixtures/pg_doc_customers_update_payload.json"
            )),
        ),
        (
            Op::Delete,
            read(&format!(
                "{dir}/tests/fixtures/pg_doc_customers_delete_payload.json"
            )),
        ),
    ]
}

#[test]
fn documented_events_decode_with_their_op_and_source() {
    for (op, bytes) in documented() {
        let Ok(Decoded::Change(change)) = decode_change(Some(&bytes)) else {
            panic!("{op:?} does not decode");
        };
        assert_eq!(change.event.op, op);
        assert_eq!(change.event.source.table.as_deref(), Some("customers"));
        assert!(change.event.source.tx_id.is_some());
    }
    assert_eq!(decode_change(None), Ok(Decoded::Tombstone));
}

#[test]
fn documented_events_of_an_unmapped_table_emit_nothing_and_are_no_dead_letters() {
    for (op, bytes) in documented() {
        let mapped = map_record(TOPIC, Some(&bytes), &DecodeSettings::default())
            .unwrap_or_else(|e| panic!("{op:?}: {e}"));
        assert!(mapped.outputs.is_empty(), "{op:?}");
    }
    let tombstone = map_record(TOPIC, None, &DecodeSettings::default()).expect("tombstone");
    assert!(tombstone.outputs.is_empty());
}
