//! cdc-processor's mapping over Debezium PostgreSQL change events written as the connector's
//! documentation shows them (JsonConverter with and without schemas; create, update, delete,
//! tombstone, snapshot read; `decimal.handling.mode` precise and string).

use cdc_processor::columns::DecodeSettings;
use cdc_processor::error::MapError;
use cdc_processor::mapping::{Mapped, Output, map_record};
use trendstream_events::debezium::DecimalMode;
use trendstream_events::{InventoryChangeKind, OrderEvent, OrderStatus};

const TOPIC: &str = "shop.public.orders";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn map(name: &str) -> Result<Mapped, MapError> {
    map_record(TOPIC, Some(&fixture(name)), &DecodeSettings::default())
}

fn one_order(name: &str) -> OrderEvent {
    let mapped = map(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    match mapped.outputs.as_slice() {
        [Output::Order(order)] => order.clone(),
        other => panic!("{name}: expected one order event, got {other:?}"),
    }
}

#[test]
fn create_is_a_placed_order_with_the_precise_decimal_amount() {
    let order = one_order("orders_create.json");
    assert_eq!(order.order_id, "o-1001");
    assert_eq!(order.user_id, "u-42");
    assert_eq!(order.status, OrderStatus::Placed);
    assert_eq!(order.amount.to_string(), "5250.00");
    assert_eq!(order.currency.as_str(), "TRY");
    assert_eq!(order.ts, 1_767_261_600_000, "updated_at");
    assert_eq!(order.event_id, "cdc:o-1001:placed:lsn24023128");
    assert!(order.items.is_empty());
}

#[test]
fn the_bare_payload_maps_like_the_envelope() {
    assert_eq!(
        one_order("orders_create_bare.json"),
        one_order("orders_create.json")
    );
}

#[test]
fn status_update_to_cancelled_becomes_a_cancellation() {
    let order = one_order("orders_update_cancelled.json");
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.amount.to_string(), "5250.00");
    assert_eq!(order.ts, 1_767_261_900_000);
}

#[test]
fn an_update_that_keeps_the_status_emits_nothing() {
    let mapped = map("orders_update_amount_only.json").expect("maps");
    assert!(mapped.outputs.is_empty());
}

#[test]
fn delete_of_a_placed_order_cancels_it_at_commit_time_and_the_tombstone_is_nothing() {
    let order = one_order("orders_delete.json");
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.ts, 1_767_262_200_789, "source.ts_ms");
    let tombstone = map_record(TOPIC, None, &DecodeSettings::default()).expect("tombstone");
    assert_eq!(tombstone, Mapped::default());
}

#[test]
fn delete_without_the_old_row_is_rejected_with_the_reason() {
    let err = map("orders_delete_key_only.json").expect_err("dead letter");
    assert!(err.to_string().contains("REPLICA IDENTITY FULL"), "{err}");
}

#[test]
fn snapshot_read_is_the_current_status() {
    let order = one_order("orders_snapshot_read.json");
    assert_eq!(order.status, OrderStatus::Placed);
    assert_eq!(order.event_id, "cdc:o-1001:placed:lsn24023100");
}

#[test]
fn string_decimals_without_schema_use_the_configured_mode() {
    let settings = DecodeSettings {
        decimal_mode: DecimalMode::String,
        ..DecodeSettings::default()
    };
    let bytes = fixture("orders_update_refunded_string_decimal_bare.json");
    let mapped = map_record(TOPIC, Some(&bytes), &settings).expect("maps");
    let [Output::Order(order)] = mapped.outputs.as_slice() else {
        panic!("one order: {mapped:?}");
    };
    assert_eq!(order.status, OrderStatus::Refunded);
    assert_eq!(order.amount.to_string(), "5250.00");
    assert_eq!(order.ts, 1_767_265_200_000);
    // The same record read as precise (base64) is a clear decode error, not a wrong amount.
    let err = map_record(TOPIC, Some(&bytes), &DecodeSettings::default()).expect_err("base64");
    assert!(err.to_string().contains("amount"), "{err}");
}

#[test]
fn inventory_update_reports_the_new_and_previous_quantity() {
    let bytes = fixture("inventory_update.json");
    let mapped = map_record(
        "shop.public.inventory",
        Some(&bytes),
        &DecodeSettings::default(),
    )
    .expect("maps");
    let [Output::Inventory(change)] = mapped.outputs.as_slice() else {
        panic!("one change: {mapped:?}");
    };
    assert_eq!(change.sku, "sku-7");
    assert_eq!(change.change, InventoryChangeKind::Updated);
    assert_eq!(
        (change.quantity, change.previous_quantity, change.delta()),
        (7, Some(10), Some(-3))
    );
    assert_eq!(change.ts, 1_767_261_600_000);
}

#[test]
fn undecodable_records_are_record_errors_with_a_reason() {
    for (bytes, needle) in [
        (b"".to_vec(), "empty"),
        (b"{not json".to_vec(), "(root)"),
        (br#"{"op":"x"}"#.to_vec(), "op"),
        (fixture("orders_bad_status.json"), "shipped"),
    ] {
        let err =
            map_record(TOPIC, Some(&bytes), &DecodeSettings::default()).expect_err("rejected");
        assert!(
            err.to_string().contains(needle),
            "{err} should mention {needle}"
        );
    }
}

#[test]
fn other_tables_and_order_items_emit_nothing() {
    let bytes = fixture("orders_create_bare.json");
    let users = map_record(
        "shop.public.users",
        Some(
            &String::from_utf8_lossy(&bytes)
                .replace("\"table\": \"orders\"", "\"table\": \"users\"")
                .into_bytes(),
        ),
        &DecodeSettings::default(),
    )
    .expect("ignored");
    assert!(users.outputs.is_empty());
    let item = br#"{"before":null,"after":{"order_id":"o-1","line_no":1,"product_id":"p-1","category":"books","quantity":2,"unit_price":"12.50"},"source":{"table":"order_items","ts_ms":1},"op":"c"}"#;
    let settings = DecodeSettings {
        decimal_mode: DecimalMode::String,
        ..DecodeSettings::default()
    };
    assert!(
        map_record("shop.public.order_items", Some(item), &settings)
            .expect("checked")
            .outputs
            .is_empty()
    );
    let bad = br#"{"before":null,"after":{"order_id":"o-1","line_no":1,"product_id":"p-1","category":"books","quantity":0,"unit_price":"12.50"},"source":{"table":"order_items","ts_ms":1},"op":"c"}"#;
    assert!(map_record("shop.public.order_items", Some(bad), &settings).is_err());
}

#[test]
fn transaction_metadata_records_are_read_and_emit_nothing() {
    let begin = br#"{"status":"BEGIN","id":"571:53195829","ts_ms":1486500577125,"event_count":null,"data_collections":null}"#;
    let end = br#"{"status":"END","id":"571:53195832","ts_ms":1486500577691,"event_count":2,"data_collections":[{"data_collection":"s1.a","event_count":1},{"data_collection":"s2.a","event_count":1}]}"#;
    for value in [&begin[..], &end[..]] {
        let mapped = map_record("shop.transaction", Some(value), &DecodeSettings::default())
            .expect("metadata");
        assert!(mapped.outputs.is_empty());
    }
    assert!(map_record("shop.transaction", Some(b"{}"), &DecodeSettings::default()).is_err());
}
