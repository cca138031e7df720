//! Corrupted input must produce errors, never panics: every decoder is fed truncations and
//! byte substitutions of valid records.

use trendstream_events::debezium::{DecimalMode, Decoded, Image, TimestampEncoding, decode_change};
use trendstream_events::{decode_click, decode_order};

const ORDER: &str = r#"{"event_id":"e-3","order_id":"o-1","user_id":"u-42","status":"placed","amount":"5000.00","currency":"TRY","items":[{"product_id":"p-7","category":"electronics","quantity":2,"unit_price":"2400.00"}],"ts":"2023-11-14T22:13:20.123Z"}"#;
const CLICK: &str = r#"{"event_id":"e-1","user_id":"u-42","session_id":"s-9","event_type":"add_to_cart","product_id":"p-7","price":"1299.90","ts":1700000000123}"#;
const CHANGE: &str = r#"{"before":null,"after":{"order_id":"o-1","amount":"B6Eg","created_at":1700000000123456,"updated_at":"2023-11-14T22:13:20.123456Z"},"source":{"ts_ms":1,"snapshot":"last","txId":7,"lsn":10},"op":"c","ts_ms":2}"#;

fn variants(valid: &str) -> Vec<Vec<u8>> {
    let bytes = valid.as_bytes();
    let mut out = Vec::new();
    for i in 0..bytes.len() {
        out.push(bytes[..i].to_vec());
        for sub in [b'"', b'0', b'-', b'.', b'{', b']', 0xff, b'e'] {
            let mut v = bytes.to_vec();
            v[i] = sub;
            out.push(v);
        }
    }
    out
}

#[test]
fn corrupted_records_never_panic() {
    for v in variants(ORDER) {
        let _ = decode_order(&v);
    }
    for v in variants(CLICK) {
        let _ = decode_click(&v);
    }
    for v in variants(CHANGE) {
        if let Ok(Decoded::Change(record)) = decode_change(Some(&v)) {
            for image in [Image::Before, Image::After] {
                for column in ["order_id", "amount", "created_at", "updated_at"] {
                    for mode in [
                        DecimalMode::Precise { scale: 2 },
                        DecimalMode::Precise { scale: 40 },
                        DecimalMode::VariableScale,
                        DecimalMode::String,
                        DecimalMode::Double,
                    ] {
                        let _ = record.decimal(image, column, mode);
                    }
                    for encoding in [
                        TimestampEncoding::Millis,
                        TimestampEncoding::Micros,
                        TimestampEncoding::Nanos,
                        TimestampEncoding::Zoned,
                    ] {
                        let _ = record.timestamp_ms(image, column, encoding);
                    }
                }
            }
        }
    }
}
