//! Event and output contracts: round trips, accepted input forms, and bad records.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use trendstream_events::{
    CategoryRevenue, ClickEvent, ClickEventType, Currency, DecodeError, FraudAlert, Money,
    OrderEvent, OrderItem, OrderStatus, RevenueWindow, SessionSummary, Severity, UserFeatures,
    Validate, decode, decode_click, decode_order, encode, encode_click, encode_order,
};

fn money(s: &str) -> Money {
    s.parse().expect("test money")
}

fn click() -> ClickEvent {
    ClickEvent {
        event_id: "e-1".into(),
        user_id: "u-42".into(),
        session_id: Some("s-9".into()),
        event_type: ClickEventType::AddToCart,
        product_id: Some("p-7".into()),
        category: Some("electronics".into()),
        price: Some(money("1299.90")),
        device: Some("mobile".into()),
        ts: 1_700_000_000_123,
    }
}

fn minimal_click() -> ClickEvent {
    ClickEvent {
        event_id: "e-2".into(),
        user_id: "u-42".into(),
        session_id: None,
        event_type: ClickEventType::Search,
        product_id: None,
        category: None,
        price: None,
        device: None,
        ts: 0,
    }
}

fn order() -> OrderEvent {
    OrderEvent {
        event_id: "e-3".into(),
        order_id: "o-1".into(),
        user_id: "u-42".into(),
        status: OrderStatus::Placed,
        amount: money("5000.00"),
        currency: Currency::TRY,
        items: vec![
            OrderItem {
                product_id: "p-7".into(),
                category: "electronics".into(),
                quantity: 2,
                unit_price: money("2400.00"),
            },
            OrderItem {
                product_id: "p-8".into(),
                category: "books".into(),
                quantity: 1,
                unit_price: money("200"),
            },
        ],
        ts: 1_700_000_000_500,
    }
}

fn fraud_alert() -> FraudAlert {
    let order_ids = vec!["o-1".to_owned(), "o-2".to_owned(), "o-3".to_owned()];
    FraudAlert {
        alert_id: FraudAlert::deterministic_id(
            "RAPID_ORDERS",
            "u-42",
            &order_ids,
            1_700_000_000_000,
        ),
        rule: "RAPID_ORDERS".into(),
        user_id: "u-42".into(),
        order_ids,
        window_start: 1_700_000_000_000,
        window_end: 1_700_000_300_000,
        ts: 1_700_000_120_000,
        severity: Severity::High,
        total_amount: money("16500.50"),
        currency: Currency::TRY,
        details: Some("3 orders in 2m".into()),
    }
}

fn session() -> SessionSummary {
    SessionSummary {
        session_id: SessionSummary::deterministic_id("u-42", 1_700_000_000_000),
        user_id: "u-42".into(),
        start_ts: 1_700_000_000_000,
        end_ts: 1_700_000_600_000,
        duration_ms: 600_000,
        event_count: 12,
        page_views: 4,
        product_views: 5,
        searches: 1,
        cart_adds: 1,
        cart_removes: 0,
        checkouts: 1,
        last_category: Some("books".into()),
        categories: vec!["electronics".into(), "books".into()],
        device: Some("desktop".into()),
    }
}

fn revenue() -> RevenueWindow {
    let per_category = BTreeMap::from([
        (
            "books".to_owned(),
            CategoryRevenue {
                gmv: money("200.00"),
                orders: 1,
            },
        ),
        (
            "electronics".to_owned(),
            CategoryRevenue {
                gmv: money("-99.95"),
                orders: -1,
            },
        ),
    ]);
    RevenueWindow::new(
        1_700_000_040_000,
        1_700_000_100_000,
        Currency::TRY,
        money("100.05"),
        3,
        per_category,
    )
}

fn features() -> UserFeatures {
    UserFeatures {
        user_id: "u-42".into(),
        current_session_length_ms: 90_000,
        session_events: 7,
        views: 5,
        cart_adds: 1,
        last_category: Some("books".into()),
        session_count: 3,
        avg_session_duration_ms: 420_000,
        updated_ts: 1_700_000_090_000,
    }
}

fn round_trip<T>(value: &T)
where
    T: Serialize + DeserializeOwned + Validate + PartialEq + std::fmt::Debug,
{
    value.validate().expect("sample is valid");
    let bytes = encode(value).expect("encode");
    let back: T =
        decode(&bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
    assert_eq!(&back, value);
    assert_no_floats(&serde_json::from_slice(&bytes).expect("encoded JSON"));
}

/// Money is written as strings and time as integers, so no JSON float may ever appear.
fn assert_no_floats(v: &Value) {
    match v {
        Value::Number(n) => assert!(!n.is_f64(), "float {n} in output"),
        Value::Array(items) => items.iter().for_each(assert_no_floats),
        Value::Object(map) => map.values().for_each(assert_no_floats),
        _ => {}
    }
}

#[test]
fn every_type_round_trips() {
    round_trip(&click());
    round_trip(&minimal_click());
    round_trip(&order());
    round_trip(&fraud_alert());
    round_trip(&session());
    round_trip(&revenue());
    round_trip(&features());
    for &event_type in ClickEventType::ALL {
        round_trip(&ClickEvent {
            event_type,
            ..click()
        });
    }
    for &status in OrderStatus::ALL {
        round_trip(&OrderEvent {
            status,
            currency: Currency::EUR,
            ..order()
        });
    }
}

#[test]
fn named_helpers_match_the_generic_ones() {
    let bytes = encode_click(&click()).expect("encode");
    assert_eq!(decode_click(&bytes), Ok(click()));
    let bytes = encode_order(&order()).expect("encode");
    assert_eq!(decode_order(&bytes), Ok(order()));
}

#[test]
fn wire_format_is_stable() {
    let v: Value = serde_json::from_slice(&encode(&order()).expect("encode")).expect("json");
    assert_eq!(
        v,
        json!({
            "event_id": "e-3", "order_id": "o-1", "user_id": "u-42", "status": "placed",
            "amount": "5000.00", "currency": "TRY",
            "items": [
                {"product_id": "p-7", "category": "electronics", "quantity": 2, "unit_price": "2400.00"},
                {"product_id": "p-8", "category": "books", "quantity": 1, "unit_price": "200"}
            ],
            "ts": 1_700_000_000_500_i64
        })
    );
    let v: Value =
        serde_json::from_slice(&encode(&minimal_click()).expect("encode")).expect("json");
    assert_eq!(
        v,
        json!({"event_id": "e-2", "user_id": "u-42", "event_type": "search", "ts": 0}),
        "absent optionals are omitted"
    );
}

#[test]
fn ts_accepts_integers_and_rfc3339_and_writes_integers() {
    let forms = [
        json!(1_700_000_000_123_i64),
        json!("2023-11-14T22:13:20.123Z"),
        json!("2023-11-15T01:13:20.123+03:00"),
    ];
    for ts in forms {
        let mut c = serde_json::to_value(click()).expect("json");
        c["ts"] = ts.clone();
        let decoded = decode_click(&serde_json::to_vec(&c).expect("json")).expect("decodes");
        assert_eq!(decoded.ts, 1_700_000_000_123, "{ts}");
        let written: Value =
            serde_json::from_slice(&encode(&decoded).expect("encode")).expect("json");
        assert_eq!(written["ts"], json!(1_700_000_000_123_i64), "{ts}");

        let mut o = serde_json::to_value(order()).expect("json");
        o["ts"] = ts.clone();
        assert_eq!(
            decode_order(&serde_json::to_vec(&o).expect("json")).map(|o| o.ts),
            Ok(1_700_000_000_123),
            "{ts}"
        );
    }
}

#[test]
fn money_accepts_strings_and_integer_minor_units() {
    let cases: &[(Value, &str)] = &[
        (json!("5000.00"), "5000.00"),
        (json!("5000"), "5000"),
        (json!(500_000), "5000.00"),
        (json!(1), "0.01"),
    ];
    for (amount, want) in cases {
        let mut o = serde_json::to_value(order()).expect("json");
        o["amount"] = amount.clone();
        let decoded = decode_order(&serde_json::to_vec(&o).expect("json")).expect("decodes");
        assert_eq!(
            decoded.amount.amount(),
            Decimal::from_str_exact(want).expect("dec")
        );
        let written: Value =
            serde_json::from_slice(&encode(&decoded).expect("encode")).expect("json");
        assert_eq!(
            written["amount"],
            json!(want),
            "{amount} written as a decimal string"
        );
    }
}

#[test]
fn currency_defaults_to_try() {
    let mut o = serde_json::to_value(order()).expect("json");
    o.as_object_mut().expect("object").remove("currency");
    let decoded = decode_order(&serde_json::to_vec(&o).expect("json")).expect("decodes");
    assert_eq!(decoded.currency, Currency::TRY);
    o["currency"] = json!("USD");
    let decoded = decode_order(&serde_json::to_vec(&o).expect("json")).expect("decodes");
    assert_eq!(decoded.currency.as_str(), "USD");
}

#[test]
fn unknown_fields_are_tolerated() {
    let mut o = serde_json::to_value(order()).expect("json");
    o["schema_version"] = json!(7);
    o["metadata"] = json!({"source": "mobile-app", "tags": [1.5, null]});
    o["items"][0]["discount"] = json!("10.00");
    assert_eq!(
        decode_order(&serde_json::to_vec(&o).expect("json")),
        Ok(order())
    );

    let mut c = serde_json::to_value(click()).expect("json");
    c["referrer"] = json!("https://example.com");
    c["experiment"] = json!({"id": 3});
    assert_eq!(
        decode_click(&serde_json::to_vec(&c).expect("json")),
        Ok(click())
    );

    let mut a = serde_json::to_value(fraud_alert()).expect("json");
    a["model_score"] = json!(0.93);
    assert_eq!(
        decode::<FraudAlert>(&serde_json::to_vec(&a).expect("json")),
        Ok(fraud_alert())
    );
}

/// Applies `edit` to a valid record and returns the decode error text and field path.
fn break_record(base: Value, edit: impl FnOnce(&mut Value)) -> Value {
    let mut v = base;
    edit(&mut v);
    v
}

#[test]
fn bad_orders_name_the_field() {
    type Edit = fn(&mut Value);
    let cases: &[(&str, Edit, &str, &str)] = &[
        (
            "missing field",
            |v| {
                v.as_object_mut().map(|o| o.remove("order_id"));
            },
            "order_id",
            "missing field `order_id`",
        ),
        (
            "missing nested field",
            |v| {
                v["items"][1]
                    .as_object_mut()
                    .map(|o| o.remove("unit_price"));
            },
            "items[1].unit_price",
            "missing field",
        ),
        (
            "wrong type",
            |v| v["user_id"] = json!(42),
            "user_id",
            "invalid type: integer `42`",
        ),
        (
            "bad enum value",
            |v| v["status"] = json!("shipped"),
            "status",
            "unknown variant `shipped`",
        ),
        (
            "enum as number",
            |v| v["status"] = json!(1),
            "status",
            "invalid type",
        ),
        (
            "bad currency",
            |v| v["currency"] = json!("tl"),
            "currency",
            "3-letter uppercase ISO 4217",
        ),
        (
            "zero quantity",
            |v| v["items"][0]["quantity"] = json!(0),
            "items[0].quantity",
            "must be greater than 0",
        ),
        (
            "negative quantity",
            |v| v["items"][1]["quantity"] = json!(-1),
            "items[1].quantity",
            "invalid value",
        ),
        (
            "float amount",
            |v| v["amount"] = json!(12.5),
            "amount",
            "money must be a decimal string",
        ),
        (
            "float unit price",
            |v| v["items"][0]["unit_price"] = json!(9.99),
            "items[0].unit_price",
            "money must be a decimal string",
        ),
        (
            "garbage amount",
            |v| v["amount"] = json!("12,50 TL"),
            "amount",
            "money must be a decimal string",
        ),
        (
            "negative amount",
            |v| v["amount"] = json!("-5.00"),
            "amount",
            "must not be negative",
        ),
        (
            "negative refund",
            |v| {
                v["status"] = json!("refunded");
                v["amount"] = json!("-5.00");
            },
            "amount",
            "must not be negative",
        ),
        (
            "negative unit price",
            |v| v["items"][0]["unit_price"] = json!("-1"),
            "items[0].unit_price",
            "must not be negative",
        ),
        (
            "empty event id",
            |v| v["event_id"] = json!(""),
            "event_id",
            "must not be empty",
        ),
        (
            "blank order id",
            |v| v["order_id"] = json!("  "),
            "order_id",
            "must not be empty",
        ),
        (
            "empty product id",
            |v| v["items"][0]["product_id"] = json!(""),
            "items[0].product_id",
            "must not be empty",
        ),
        (
            "bad ts string",
            |v| v["ts"] = json!("last tuesday"),
            "ts",
            "invalid RFC 3339",
        ),
        ("float ts", |v| v["ts"] = json!(1.7e12), "ts", "float"),
        (
            "negative ts",
            |v| v["ts"] = json!(-5),
            "ts",
            "must not be negative",
        ),
        (
            "items not a list",
            |v| v["items"] = json!({"a": 1}),
            "items",
            "invalid type",
        ),
    ];
    for (name, edit, path, message) in cases {
        let bytes = serde_json::to_vec(&break_record(
            serde_json::to_value(order()).expect("json"),
            edit,
        ))
        .expect("json");
        let err = decode_order(&bytes).expect_err(name);
        let text = err.to_string();
        assert_eq!(err.field_path(), *path, "{name}: {text}");
        assert!(text.starts_with(&format!("{path}: ")), "{name}: {text}");
        assert!(text.contains(message), "{name}: {text}");
    }
}

#[test]
fn bad_clicks_name_the_field() {
    type Edit = fn(&mut Value);
    let cases: &[(&str, Edit, &str, &str)] = &[
        (
            "event type as number",
            |v| v["event_type"] = json!(5),
            "event_type",
            "invalid type: integer `5`",
        ),
        (
            "unknown event type",
            |v| v["event_type"] = json!("teleport"),
            "event_type",
            "unknown variant `teleport`",
        ),
        (
            "camel case event type",
            |v| v["event_type"] = json!("AddToCart"),
            "event_type",
            "unknown variant",
        ),
        (
            "missing user",
            |v| {
                v.as_object_mut().map(|o| o.remove("user_id"));
            },
            "user_id",
            "missing field",
        ),
        (
            "missing ts",
            |v| {
                v.as_object_mut().map(|o| o.remove("ts"));
            },
            "ts",
            "missing field",
        ),
        (
            "float price",
            |v| v["price"] = json!(1299.9),
            "price",
            "money must be a decimal string",
        ),
        (
            "negative price",
            |v| v["price"] = json!("-1.00"),
            "price",
            "must not be negative",
        ),
        (
            "empty session hint",
            |v| v["session_id"] = json!(""),
            "session_id",
            "must not be empty",
        ),
        (
            "device as object",
            |v| v["device"] = json!({"os": "ios"}),
            "device",
            "invalid type",
        ),
    ];
    for (name, edit, path, message) in cases {
        let bytes = serde_json::to_vec(&break_record(
            serde_json::to_value(click()).expect("json"),
            edit,
        ))
        .expect("json");
        let err = decode_click(&bytes).expect_err(name);
        let text = err.to_string();
        assert_eq!(err.field_path(), *path, "{name}: {text}");
        assert!(text.contains(message), "{name}: {text}");
    }
}

#[test]
fn not_json_at_all() {
    let cases: &[&[u8]] = &[
        b"",
        b"not json",
        b"[1,2]",
        b"{\"event_id\":",
        b"{} {}",
        b"\xff\xfe",
    ];
    for bytes in cases {
        let err = decode_click(bytes).expect_err("garbage");
        assert!(matches!(err, DecodeError::Malformed { .. }), "{err:?}");
    }
}

#[test]
fn fraud_alert_ids_are_deterministic() {
    let ids = ["o-1", "o-2", "o-3"];
    let id = FraudAlert::deterministic_id("RAPID_ORDERS", "u-42", &ids, 1_700_000_000_000);
    // Fixed literal: changing the hashing scheme must be a deliberate, visible change.
    // sha256 of "26:trendstream/fraud-alert/v1;12:RAPID_ORDERS;4:u-42;1:3;3:o-1;3:o-2;3:o-3;
    // 13:1700000000000;" (no line break), first 32 hex digits.
    assert_eq!(id, "c6694453eee8dc36d0bf7435fad5ce9d");
    assert_eq!(
        id,
        FraudAlert::deterministic_id("RAPID_ORDERS", "u-42", &ids, 1_700_000_000_000),
        "same inputs, same id"
    );
    let owned: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(
        id,
        FraudAlert::deterministic_id("RAPID_ORDERS", "u-42", &owned, 1_700_000_000_000)
    );

    let different = [
        FraudAlert::deterministic_id("HIGH_VALUE_BURST", "u-42", &ids, 1_700_000_000_000),
        FraudAlert::deterministic_id("RAPID_ORDERS", "u-43", &ids, 1_700_000_000_000),
        FraudAlert::deterministic_id(
            "RAPID_ORDERS",
            "u-42",
            &["o-2", "o-1", "o-3"],
            1_700_000_000_000,
        ),
        FraudAlert::deterministic_id("RAPID_ORDERS", "u-42", &["o-1", "o-2"], 1_700_000_000_000),
        FraudAlert::deterministic_id(
            "RAPID_ORDERS",
            "u-42",
            &["o-1", "o-2o-3"],
            1_700_000_000_000,
        ),
        FraudAlert::deterministic_id("RAPID_ORDERS", "u-42", &ids, 1_700_000_060_000),
    ];
    for other in &different {
        assert_ne!(&id, other);
    }
    assert_eq!(fraud_alert().expected_id(), fraud_alert().alert_id);
}

#[test]
fn session_ids_are_deterministic() {
    assert_eq!(
        SessionSummary::deterministic_id("u-42", 1_700_000_000_000),
        "96543a41f015fad0a5db46a8a6215459"
    );
    assert_ne!(
        SessionSummary::deterministic_id("u-42", 1_700_000_000_000),
        SessionSummary::deterministic_id("u-42", 1_700_000_000_001)
    );
}

#[test]
fn average_order_value() {
    let cases: &[(&str, i64, &str)] = &[
        ("100.05", 3, "33.35"),
        ("100", 3, "33.33"),
        ("0.125", 1, "0.12"),
        ("0.135", 1, "0.14"),
        ("-0.125", 1, "-0.12"),
        ("5000.00", 0, "0"),
        ("-200.00", -2, "0"),
        ("0", 5, "0"),
    ];
    for (gmv, orders, want) in cases {
        let aov = RevenueWindow::average_order_value(money(gmv), *orders);
        assert_eq!(aov, money(want), "{gmv} / {orders}");
    }
    assert_eq!(revenue().average_order_value, money("33.35"));
}

#[test]
fn output_validation() {
    let mut w = revenue();
    w.window_end = w.window_start - 1;
    assert_eq!(
        w.validate().map_err(|e| e.field),
        Err("window_end".to_owned())
    );

    let mut s = session();
    s.end_ts = s.start_ts - 1;
    assert_eq!(s.validate().map_err(|e| e.field), Err("end_ts".to_owned()));

    let mut a = fraud_alert();
    a.order_ids[1] = String::new();
    assert_eq!(
        a.validate().map_err(|e| e.field),
        Err("order_ids[1]".to_owned())
    );

    let severity: Result<FraudAlert, _> = {
        let mut v = serde_json::to_value(fraud_alert()).expect("json");
        v.as_object_mut().map(|o| o.remove("severity"));
        decode(&serde_json::to_vec(&v).expect("json"))
    };
    assert_eq!(severity.map(|a| a.severity), Ok(Severity::Medium));
}
