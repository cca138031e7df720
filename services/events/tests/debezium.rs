//! Debezium change events: envelope shapes, ops, tombstones, decimal and timestamp columns.

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};
use trendstream_events::debezium::{
    ChangeRecord, DebeziumError, DecimalMode, Decoded, Image, Op, Snapshot, TimestampEncoding,
    TransactionStatus, ValueError, decode_change, decode_decimal, decode_transaction_metadata,
    micro_timestamp_to_millis, nano_timestamp_to_millis, timestamp_to_millis,
    zoned_timestamp_to_millis,
};

const PG_CUSTOMERS_CREATE: &str = include_str!("fixtures/pg_customers_create.json");
const PG_ORDERS_UPDATE: &str = include_str!("fixtures/pg_orders_update.json");

fn dec(s: &str) -> Decimal {
    Decimal::from_str_exact(s).expect("test decimal")
}

fn change(bytes: &[u8]) -> ChangeRecord {
    match decode_change(Some(bytes)) {
        Ok(Decoded::Change(record)) => *record,
        other => panic!("expected a change, got {other:?}"),
    }
}

fn bare_payload(envelope: &str) -> Vec<u8> {
    let v: Value = serde_json::from_str(envelope).expect("fixture is JSON");
    serde_json::to_vec(&v["payload"]).expect("payload")
}

#[test]
fn postgres_documentation_create_event_with_schema() {
    let record = change(PG_CUSTOMERS_CREATE.as_bytes());
    let ev = &record.event;
    assert_eq!(ev.op, Op::Create);
    assert_eq!(ev.before, None);
    let after = ev.after.as_ref().expect("after image");
    assert_eq!(after["id"], json!(1));
    assert_eq!(after["email"], json!("annek@noanswer.org"));
    assert_eq!(ev.ts_ms, Some(1_559_033_904_863));

    let src = &ev.source;
    assert_eq!(src.connector.as_deref(), Some("postgresql"));
    assert_eq!(src.name.as_deref(), Some("PostgreSQL_server"));
    assert_eq!(src.ts_ms, Some(1_559_033_904_863));
    assert_eq!(src.snapshot, Some(Snapshot::True));
    assert!(src.is_snapshot());
    assert_eq!(src.db.as_deref(), Some("postgres"));
    assert_eq!(src.schema.as_deref(), Some("public"));
    assert_eq!(src.table.as_deref(), Some("customers"));
    assert_eq!(src.tx_id, Some(555));
    assert_eq!(src.lsn, Some(24_023_128));
    assert_eq!(src.xmin, None);
    assert_eq!(src.sequence.as_deref(), Some(r#"["24023119","24023128"]"#));

    let schema = record.schema.as_ref().expect("schema kept");
    assert_eq!(
        schema.name.as_deref(),
        Some("PostgreSQL_server.inventory.customers.Envelope")
    );
    let email = record
        .column_schema(Image::After, "email")
        .expect("column schema");
    assert_eq!(email.schema_type, "string");
    assert!(!email.optional);
    assert!(record.column_schema(Image::After, "nope").is_none());
}

#[test]
fn bare_payload_decodes_to_the_same_event_without_schema() {
    let with_schema = change(PG_CUSTOMERS_CREATE.as_bytes());
    let bare = change(&bare_payload(PG_CUSTOMERS_CREATE));
    assert_eq!(bare.event, with_schema.event);
    assert_eq!(bare.schema, None);
}

#[test]
fn every_op_code() {
    let cases: &[(&str, Op, bool, bool)] = &[
        ("c", Op::Create, false, true),
        ("u", Op::Update, true, true),
        ("d", Op::Delete, true, false),
        ("r", Op::Read, false, true),
        ("t", Op::Truncate, false, false),
        ("m", Op::Message, false, false),
    ];
    for (code, op, has_before, has_after) in cases {
        let row = json!({"id": 7, "status": "paid"});
        let payload = json!({
            "before": if *has_before { row.clone() } else { Value::Null },
            "after": if *has_after { row.clone() } else { Value::Null },
            "source": {"connector": "postgresql", "ts_ms": 1, "snapshot": "false", "lsn": 10, "txId": 3},
            "op": code,
            "ts_ms": 2,
            "message": if *code == "m" { json!({"prefix": "audit", "content": "aGk="}) } else { Value::Null },
        });
        for bytes in [
            serde_json::to_vec(&payload).expect("bare"),
            serde_json::to_vec(&json!({"schema": null, "payload": payload})).expect("envelope"),
        ] {
            let record = change(&bytes);
            assert_eq!(record.event.op, *op, "{code}");
            assert_eq!(record.event.before.is_some(), *has_before, "{code} before");
            assert_eq!(record.event.after.is_some(), *has_after, "{code} after");
            assert_eq!(
                record.event.message.is_some(),
                *code == "m",
                "{code} message"
            );
            assert!(!record.event.source.is_snapshot());
        }
    }
}

#[test]
fn tombstones_and_empty_values() {
    assert_eq!(decode_change(None), Ok(Decoded::Tombstone));
    assert_eq!(decode_change(Some(b"null")), Ok(Decoded::Tombstone));
    assert_eq!(
        decode_change(Some(br#"{"schema":null,"payload":null}"#)),
        Ok(Decoded::Tombstone)
    );
    assert_eq!(decode_change(Some(b"")), Err(DebeziumError::EmptyValue));
    let err = decode_change(Some(b"  ")).expect_err("whitespace is not JSON");
    assert!(err.to_string().contains("EOF"), "{err}");
}

#[test]
fn malformed_change_events_name_the_field() {
    let cases: &[(&str, &str)] = &[
        (r#"{"op":"x","after":{}}"#, "op: unknown variant `x`"),
        (r#"{"after":{}}"#, "op: missing field `op`"),
        (
            r#"{"schema":{},"payload":{"after":{}}}"#,
            "payload.op: missing field",
        ),
        (
            r#"{"schema":{},"payload":{"op":"c","source":{"lsn":"abc"}}}"#,
            "payload.source.lsn:",
        ),
        (
            r#"{"schema":{"fields":[{"optional":"yes"}]},"payload":{"op":"c"}}"#,
            "schema.fields[0].optional:",
        ),
        (r#"{"op":"c","after":[1]}"#, "after: invalid type"),
        (
            r#"[1,2]"#,
            "(root): expected a change event object, got an array",
        ),
        (r#"{"op":"c""#, "(root): EOF"),
    ];
    for (input, want) in cases {
        let err = decode_change(Some(input.as_bytes())).expect_err(input);
        assert!(err.to_string().starts_with(want), "{input}: {err}");
    }
}

#[test]
fn snapshot_markers_as_strings_and_booleans() {
    let cases: &[(Value, Snapshot, bool)] = &[
        (json!(true), Snapshot::True, true),
        (json!(false), Snapshot::False, false),
        (json!("true"), Snapshot::True, true),
        (json!("false"), Snapshot::False, false),
        (json!("last"), Snapshot::Last, true),
        (json!("first"), Snapshot::First, true),
        (json!("incremental"), Snapshot::Incremental, true),
        (
            json!("last_in_data_collection"),
            Snapshot::LastInDataCollection,
            true,
        ),
        (json!("someday"), Snapshot::Other("someday".into()), true),
    ];
    for (marker, want, is_snapshot) in cases {
        let bytes =
            serde_json::to_vec(&json!({"op": "r", "after": {}, "source": {"snapshot": marker}}))
                .expect("json");
        let record = change(&bytes);
        assert_eq!(
            record.event.source.snapshot.as_ref(),
            Some(want),
            "{marker}"
        );
        assert_eq!(record.event.source.is_snapshot(), *is_snapshot, "{marker}");
    }
}

#[test]
fn decimal_and_timestamp_columns_follow_the_schema() {
    let record = change(PG_ORDERS_UPDATE.as_bytes());
    assert_eq!(record.event.op, Op::Update);
    let tx = record
        .event
        .transaction
        .as_ref()
        .expect("transaction block");
    assert_eq!(tx.id, "777:24023128");
    assert_eq!(record.event.source.snapshot, Some(Snapshot::False));

    // The fallback is deliberately wrong: the schema must win.
    let wrong = DecimalMode::Double;
    assert_eq!(
        record.decimal(Image::After, "amount", wrong),
        Ok(Some(dec("5000.00")))
    );
    assert_eq!(
        record.decimal(Image::After, "adjustment", wrong),
        Ok(Some(dec("-5000.00")))
    );
    assert_eq!(record.decimal(Image::Before, "adjustment", wrong), Ok(None));
    assert_eq!(record.decimal(Image::After, "missing", wrong), Ok(None));
    assert_eq!(
        record.decimal(Image::After, "fx_rate", wrong),
        Ok(Some(dec("0.0001")))
    );
    let err = record
        .decimal(Image::After, "status", wrong)
        .expect_err("status is text, not a decimal");
    assert!(err.to_string().starts_with("column `status`:"), "{err}");

    let fallback = TimestampEncoding::Nanos;
    assert_eq!(
        record.timestamp_ms(Image::After, "created_at", fallback),
        Ok(Some(1_700_000_000_123))
    );
    assert_eq!(
        record.timestamp_ms(Image::Before, "updated_at", fallback),
        Ok(Some(1_700_000_000_123))
    );
    assert_eq!(
        record.timestamp_ms(Image::After, "updated_at", fallback),
        Ok(Some(1_700_000_400_000))
    );
    assert_eq!(
        record.timestamp_ms(Image::After, "paid_at", fallback),
        Ok(Some(1_700_000_000_500))
    );
}

#[test]
fn without_schema_the_fallback_encoding_is_used() {
    let record = change(&bare_payload(PG_ORDERS_UPDATE));
    assert_eq!(record.schema, None);
    assert_eq!(
        record.decimal(Image::After, "amount", DecimalMode::Precise { scale: 2 }),
        Ok(Some(dec("5000.00")))
    );
    assert_eq!(
        record.decimal(Image::After, "fx_rate", DecimalMode::VariableScale),
        Ok(Some(dec("0.0001")))
    );
    assert_eq!(
        record.timestamp_ms(Image::After, "created_at", TimestampEncoding::Micros),
        Ok(Some(1_700_000_000_123))
    );
}

#[test]
fn decimal_encodings() {
    let precise2 = DecimalMode::Precise { scale: 2 };
    let cases: &[(Value, DecimalMode, &str)] = &[
        (json!("B6Eg"), precise2, "5000.00"),
        (json!("+F7g"), precise2, "-5000.00"),
        (json!("B6Eg"), DecimalMode::Precise { scale: 0 }, "500000"),
        (json!("AA=="), precise2, "0.00"),
        (json!("AQ=="), precise2, "0.01"),
        (json!("/w=="), precise2, "-0.01"),
        (json!("AIA="), DecimalMode::Precise { scale: 0 }, "128"),
        (json!("/38="), DecimalMode::Precise { scale: 0 }, "-129"),
        (json!("AQ"), precise2, "0.01"),
        (
            json!("CjZMmCJ+qmrcusA="),
            precise2,
            "123456789012345678901234.56",
        ),
        (
            json!("AP///////////////w=="),
            DecimalMode::Precise { scale: 0 },
            "79228162514264337593543950335",
        ),
        (
            json!("gAAAAAAAAAAAAAAB"),
            DecimalMode::Precise { scale: 0 },
            "-39614081257132168796771975167",
        ),
        // Non-minimal sign extension beyond 16 bytes is tolerated.
        (json!("AAAAAAAAAAAAAAAAAAAAAAAAB6Eg"), precise2, "5000.00"),
        (
            json!({"scale": 2, "value": "B6Eg"}),
            DecimalMode::VariableScale,
            "5000.00",
        ),
        (json!("5000.00"), DecimalMode::String, "5000.00"),
        (json!("-0.10"), DecimalMode::String, "-0.10"),
        (json!("1.5E+3"), DecimalMode::String, "1500"),
        (json!(5000.0), DecimalMode::Double, "5000.0"),
        (json!(0.1), DecimalMode::Double, "0.1"),
        (json!(-12.25), DecimalMode::Double, "-12.25"),
        (json!(42), DecimalMode::Double, "42"),
        (json!(1e-7), DecimalMode::Double, "0.0000001"),
    ];
    for (value, mode, want) in cases {
        let got = decode_decimal(value, *mode).unwrap_or_else(|e| panic!("{value} {mode:?}: {e}"));
        assert_eq!(got, dec(want), "{value} {mode:?}");
        assert_eq!(got.scale(), dec(want).scale(), "{value} {mode:?} scale");
    }
}

#[test]
fn bad_decimal_values() {
    let precise2 = DecimalMode::Precise { scale: 2 };
    let cases: &[(Value, DecimalMode, ValueError)] = &[
        (json!(""), precise2, ValueError::EmptyBytes),
        (
            json!("AQAAAAAAAAAAAAAAAA=="),
            DecimalMode::Precise { scale: 0 },
            ValueError::OutOfRange,
        ),
        (
            json!("AQ=="),
            DecimalMode::Precise { scale: 29 },
            ValueError::OutOfRange,
        ),
        (
            json!(12.5),
            precise2,
            ValueError::Type {
                expected: "a base64 string",
                found: "a number",
            },
        ),
        (
            json!("NaN"),
            DecimalMode::Double,
            ValueError::Type {
                expected: "a JSON number",
                found: "a string",
            },
        ),
        (
            json!("abc"),
            DecimalMode::String,
            ValueError::DecimalText("abc".into()),
        ),
        (
            json!({"value": "AQ=="}),
            DecimalMode::VariableScale,
            ValueError::MissingScale,
        ),
        (
            json!({"scale": 1}),
            DecimalMode::VariableScale,
            ValueError::EmptyBytes,
        ),
    ];
    for (value, mode, want) in cases {
        assert_eq!(
            decode_decimal(value, *mode).as_ref(),
            Err(want),
            "{value} {mode:?}"
        );
    }
    let err = decode_decimal(&json!("not base64!"), precise2).expect_err("bad base64");
    assert!(matches!(err, ValueError::Base64(_)), "{err:?}");
}

#[test]
fn timestamp_encodings() {
    assert_eq!(
        micro_timestamp_to_millis(1_700_000_000_123_456),
        1_700_000_000_123
    );
    assert_eq!(micro_timestamp_to_millis(0), 0);
    assert_eq!(micro_timestamp_to_millis(-1), -1, "floors toward the past");
    assert_eq!(micro_timestamp_to_millis(-1_000), -1);
    assert_eq!(micro_timestamp_to_millis(-1_001), -2);
    assert_eq!(
        nano_timestamp_to_millis(1_700_000_000_123_456_789),
        1_700_000_000_123
    );
    assert_eq!(
        zoned_timestamp_to_millis("2023-11-14T22:13:20.123Z"),
        Ok(1_700_000_000_123)
    );
    assert!(zoned_timestamp_to_millis("2023-11-14 22:13").is_err());

    let cases: &[(Value, TimestampEncoding, Result<i64, &str>)] = &[
        (
            json!(1_700_000_000_123_456_i64),
            TimestampEncoding::Micros,
            Ok(1_700_000_000_123),
        ),
        (
            json!(1_700_000_000_123_i64),
            TimestampEncoding::Millis,
            Ok(1_700_000_000_123),
        ),
        (
            json!("2023-11-15T01:13:20.123+03:00"),
            TimestampEncoding::Zoned,
            Ok(1_700_000_000_123),
        ),
        (json!(1.5), TimestampEncoding::Micros, Err("a float")),
        (json!(u64::MAX), TimestampEncoding::Millis, Err("too large")),
        (
            json!("1700000000"),
            TimestampEncoding::Millis,
            Err("got a string"),
        ),
        (json!(17), TimestampEncoding::Zoned, Err("got a number")),
    ];
    for (value, encoding, want) in cases {
        let got = timestamp_to_millis(value, *encoding).map_err(|e| e.to_string());
        match (got, want) {
            (Ok(g), Ok(w)) => assert_eq!(g, *w, "{value}"),
            (Err(g), Err(w)) => assert!(g.contains(w), "{value}: {g}"),
            (g, w) => panic!("{value}: got {g:?}, want {w:?}"),
        }
    }
}

#[test]
fn typed_rows() {
    #[derive(Debug, PartialEq, Deserialize)]
    struct Customer {
        id: i64,
        email: String,
    }
    let record = change(PG_CUSTOMERS_CREATE.as_bytes());
    let customer: Option<Customer> = record.row_as(Image::After).expect("typed row");
    assert_eq!(
        customer,
        Some(Customer {
            id: 1,
            email: "annek@noanswer.org".into()
        })
    );
    assert_eq!(record.row_as::<Customer>(Image::Before), Ok(None));

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Wrong {
        id: String,
    }
    let err = record
        .row_as::<Wrong>(Image::After)
        .expect_err("id is a number");
    assert!(err.to_string().starts_with("payload.after.id:"), "{err}");
}

#[test]
fn transaction_metadata_events() {
    let begin = br#"{"status":"BEGIN","id":"571:53195829","ts_ms":1486500577125,"event_count":null,"data_collections":null}"#;
    let end = br#"{"schema":{"type":"struct"},"payload":{"status":"END","id":"571:53195832","ts_ms":1486500577691,"event_count":2,"data_collections":[{"data_collection":"s1.a","event_count":1},{"data_collection":"s2.a","event_count":1}]}}"#;

    let b = decode_transaction_metadata(Some(begin))
        .expect("begin")
        .expect("not a tombstone");
    assert_eq!(b.status, TransactionStatus::Begin);
    assert_eq!(b.event_count, None);

    let e = decode_transaction_metadata(Some(end))
        .expect("end")
        .expect("not a tombstone");
    assert_eq!(e.status, TransactionStatus::End);
    assert_eq!(e.event_count, Some(2));
    assert_eq!(e.data_collections.as_ref().map(Vec::len), Some(2));

    assert_eq!(decode_transaction_metadata(None), Ok(None));
    let err = decode_transaction_metadata(Some(br#"{"status":"COMMIT","id":"1"}"#))
        .expect_err("bad status");
    assert!(err.to_string().starts_with("status:"), "{err}");
}

#[test]
fn change_events_round_trip() {
    let record = change(PG_ORDERS_UPDATE.as_bytes());
    let bytes = serde_json::to_vec(&record.event).expect("encode");
    assert_eq!(change(&bytes).event, record.event);
    let schema_bytes = serde_json::to_vec(&json!({
        "schema": record.schema,
        "payload": record.event,
    }))
    .expect("encode envelope");
    assert_eq!(change(&schema_bytes), record);
}
