//! Poison pills: payloads the processors must send to their dead-letter queue. Every kind is
//! rejected by the `trendstream-events` decoder of the topic it is written to (unit-tested), and
//! is valid UTF-8 so the event file can hold it as a JSON string, byte for byte.

use crate::record::{PoisonKind, Topic};

/// The payload of a poison pill of `kind` for `topic`; `n` and `ts` make it look like the
/// real events around it (and keep pills distinct).
pub fn payload(kind: PoisonKind, topic: Topic, key: &str, n: u64, ts: i64) -> String {
    let key = escape(key);
    match (kind, topic) {
        (PoisonKind::Garbage, _) => format!("poison pill #{n}: this is not JSON"),
        (PoisonKind::TruncatedJson, Topic::Clicks) => format!(
            r#"{{"event_id":"poison-{n}","user_id":"{key}","event_type":"page_view","ts":{ts}"#
        ),
        (PoisonKind::TruncatedJson, Topic::Orders) => format!(
            r#"{{"event_id":"poison-{n}","order_id":"poison-{n}","user_id":"{key}","status":"placed","amount":"12"#
        ),
        (PoisonKind::WrongType, Topic::Clicks) => format!(
            r#"{{"event_id":"poison-{n}","user_id":{n},"event_type":"page_view","ts":{ts}}}"#
        ),
        (PoisonKind::WrongType, Topic::Orders) => format!(
            r#"{{"event_id":"poison-{n}","order_id":"poison-{n}","user_id":"{key}","status":"placed","amount":"10.00","items":"none","ts":{ts}}}"#
        ),
        (PoisonKind::FloatMoney, Topic::Clicks) => format!(
            r#"{{"event_id":"poison-{n}","user_id":"{key}","event_type":"product_view","product_id":"p-1000","price":12.5,"ts":{ts}}}"#
        ),
        (PoisonKind::FloatMoney, Topic::Orders) => format!(
            r#"{{"event_id":"poison-{n}","order_id":"poison-{n}","user_id":"{key}","status":"placed","amount":12.5,"currency":"TRY","items":[],"ts":{ts}}}"#
        ),
        (PoisonKind::UnknownVariant, Topic::Clicks) => format!(
            r#"{{"event_id":"poison-{n}","user_id":"{key}","event_type":"teleport","ts":{ts}}}"#
        ),
        (PoisonKind::UnknownVariant, Topic::Orders) => format!(
            r#"{{"event_id":"poison-{n}","order_id":"poison-{n}","user_id":"{key}","status":"stolen","amount":"10.00","ts":{ts}}}"#
        ),
        (PoisonKind::Invalid, Topic::Clicks) => format!(
            r#"{{"event_id":"poison-{n}","user_id":"","event_type":"page_view","ts":{ts}}}"#
        ),
        (PoisonKind::Invalid, Topic::Orders) => format!(
            r#"{{"event_id":"poison-{n}","order_id":"poison-{n}","user_id":"{key}","status":"placed","amount":"10.00","currency":"TRY","items":[{{"product_id":"p-1000","category":"books","quantity":0,"unit_price":"10.00"}}],"ts":{ts}}}"#
        ),
    }
}

/// The key as the inside of a JSON string (user ids are plain, but stay correct regardless).
fn escape(key: &str) -> String {
    let quoted = serde_json::Value::String(key.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use trendstream_events::{decode_click, decode_order};

    #[test]
    fn every_pill_is_rejected_by_the_decoder_of_its_topic() {
        for kind in PoisonKind::ALL {
            for topic in Topic::ALL {
                let value = payload(kind, topic, "u-\"7", 3, 1_767_225_600_000);
                let rejected = match topic {
                    Topic::Clicks => decode_click(value.as_bytes()).is_err(),
                    Topic::Orders => decode_order(value.as_bytes()).is_err(),
                };
                assert!(rejected, "{kind:?} on {topic:?} decoded: {value}");
            }
        }
    }

    #[test]
    fn well_formed_pills_fail_for_the_intended_reason() {
        use trendstream_events::DecodeError;
        let order = |kind| decode_order(payload(kind, Topic::Orders, "u-1", 1, 5).as_bytes());
        assert!(matches!(
            order(PoisonKind::Invalid),
            Err(DecodeError::Invalid(_))
        ));
        let err = order(PoisonKind::FloatMoney)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("amount"), "{err}");
        let click = decode_click(
            payload(PoisonKind::UnknownVariant, Topic::Clicks, "u-1", 1, 5).as_bytes(),
        );
        let err = click
            .err()
            .map(|e| e.field_path().to_owned())
            .unwrap_or_default();
        assert_eq!(err, "event_type");
    }
}
