//! PostgreSQL column values (text output format, as pgoutput and the snapshot's simple queries
//! return them) to the JSON Debezium's PostgreSQL connector writes with its default settings
//! (`decimal.handling.mode=precise`, `time.precision.mode=adaptive`), and the Connect schema of
//! each column.
//!
//! The capture session runs with `TimeZone=UTC` and `DateStyle=ISO`, so timestamps arrive as
//! `2026-01-01 10:30:00.123456+00`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::str::FromStr;

/// What Debezium writes for a TOASTed column that an update did not change.
pub const UNAVAILABLE_VALUE: &str = "__debezium_unavailable_value";

/// Type OIDs the capture converts (pg_type.oid).
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const DATE: u32 = 1082;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
}

/// A column value PostgreSQL sent that its type does not allow (or that Debezium's encoding
/// cannot carry, such as a `NaN` numeric).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column `{column}` (type oid {type_oid}): cannot convert {text:?}: {reason}")]
pub struct ValueError {
    pub column: String,
    pub type_oid: u32,
    pub text: String,
    pub reason: String,
}

/// A column's type as the catalog or a Relation message describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnType {
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
    pub optional: bool,
}

impl ColumnType {
    /// `(precision, scale)` of a `numeric(p, s)`; `None` for unconstrained numeric.
    fn numeric_precision_scale(&self) -> Option<(u32, u32)> {
        let typmod = self.type_modifier.checked_sub(4)?;
        if typmod < 0 {
            return None;
        }
        let typmod = typmod as u32;
        Some(((typmod >> 16) & 0xFFFF, typmod & 0xFFFF))
    }

    /// The Connect schema of the column, as a struct member.
    pub fn schema(&self) -> Value {
        let mut schema = match self.type_oid {
            oid::BOOL => json!({"type": "boolean"}),
            oid::INT2 => json!({"type": "int16"}),
            oid::INT4 => json!({"type": "int32"}),
            oid::INT8 => json!({"type": "int64"}),
            oid::FLOAT4 => json!({"type": "float"}),
            oid::FLOAT8 => json!({"type": "double"}),
            oid::DATE => json!({"type": "int32", "name": "io.debezium.time.Date", "version": 1}),
            oid::TIMESTAMP => {
                json!({"type": "int64", "name": "io.debezium.time.MicroTimestamp", "version": 1})
            }
            oid::TIMESTAMPTZ => {
                json!({"type": "string", "name": "io.debezium.time.ZonedTimestamp", "version": 1})
            }
            oid::NUMERIC => match self.numeric_precision_scale() {
                Some((precision, scale)) => json!({
                    "type": "bytes",
                    "name": "org.apache.kafka.connect.data.Decimal",
                    "version": 1,
                    "parameters": {"scale": scale.to_string(), "connect.decimal.precision": precision.to_string()}
                }),
                None => json!({
                    "type": "struct",
                    "name": "io.debezium.data.VariableScaleDecimal",
                    "version": 1,
                    "doc": "Variable scaled decimal",
                    "fields": [
                        {"type": "int32", "optional": false, "field": "scale"},
                        {"type": "bytes", "optional": false, "field": "value"}
                    ]
                }),
            },
            _ => json!({"type": "string"}),
        };
        schema["optional"] = Value::Bool(self.optional);
        schema["field"] = Value::String(self.name.clone());
        schema
    }

    /// Converts the column's text value.
    pub fn convert(&self, text: &str) -> Result<Value, ValueError> {
        let fail = |reason: &str| ValueError {
            column: self.name.clone(),
            type_oid: self.type_oid,
            text: text.chars().take(64).collect(),
            reason: reason.to_owned(),
        };
        Ok(match self.type_oid {
            oid::BOOL => match text {
                "t" => Value::Bool(true),
                "f" => Value::Bool(false),
                _ => return Err(fail("not t or f")),
            },
            oid::INT2 | oid::INT4 | oid::INT8 => {
                Value::from(text.parse::<i64>().map_err(|_| fail("not an integer"))?)
            }
            oid::FLOAT4 | oid::FLOAT8 => {
                let f: f64 = text.parse().map_err(|_| fail("not a float"))?;
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| fail("NaN and infinities cannot be written as JSON numbers"))?
            }
            oid::DATE => {
                let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .map_err(|_| fail("not an ISO date"))?;
                let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).ok_or_else(|| fail("epoch"))?;
                Value::from((date - epoch).num_days())
            }
            oid::TIMESTAMP => {
                let t = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                    .map_err(|_| fail("not an ISO timestamp"))?;
                Value::from(t.and_utc().timestamp_micros())
            }
            oid::TIMESTAMPTZ => Value::String(
                zoned_timestamp(text).ok_or_else(|| fail("not an ISO timestamp with offset"))?,
            ),
            oid::NUMERIC => {
                let value = Decimal::from_str(text).map_err(|_| {
                    fail("not a finite decimal within 28 digits (Debezium's precise mode cannot carry it)")
                })?;
                match self.numeric_precision_scale() {
                    Some((_, scale)) => Value::String(
                        precise_base64(value, scale)
                            .ok_or_else(|| fail("does not fit the column's scale"))?,
                    ),
                    None => json!({
                        "scale": value.scale(),
                        "value": precise_base64(value, value.scale()).ok_or_else(|| fail("out of range"))?,
                    }),
                }
            }
            _ => Value::String(text.to_owned()),
        })
    }
}

/// `2026-01-01 10:30:00.5+00` (or `+05:30`) to `2026-01-01T10:30:00.5Z`.
fn zoned_timestamp(text: &str) -> Option<String> {
    // PostgreSQL writes `+00` or `+05:30`; chrono's %#z accepts both.
    let t = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z").ok()?;
    Some(
        t.with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::AutoSi, true),
    )
}

/// Base64 of the unscaled value at `scale`, big-endian two's complement in the fewest bytes
/// (Java's `BigInteger.toByteArray()`), as Connect's `Decimal` is written.
pub fn precise_base64(value: Decimal, scale: u32) -> Option<String> {
    let mut v = value;
    v.rescale(scale);
    if v.scale() != scale {
        return None;
    }
    let unscaled = v.mantissa();
    let bytes = unscaled.to_be_bytes();
    // Drop leading bytes that only repeat the sign.
    let mut start = 0;
    while start < bytes.len() - 1 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0x00 && next & 0x80 == 0) || (b == 0xFF && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    Some(STANDARD.encode(&bytes[start..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use trendstream_events::debezium::decode_precise;

    fn col(type_oid: u32, type_modifier: i32) -> ColumnType {
        ColumnType {
            name: "c".into(),
            type_oid,
            type_modifier,
            optional: true,
        }
    }

    #[test]
    fn precise_decimals_round_trip_through_the_events_decoder() {
        for (text, scale) in [
            ("5000.25", 2),
            ("-1.50", 2),
            ("0", 2),
            ("127", 0),
            ("128", 0),
            ("-128", 0),
            ("99999999.99", 2),
        ] {
            let value = Decimal::from_str(text).expect("decimal");
            let b64 = precise_base64(value, scale).expect("fits");
            assert_eq!(
                decode_precise(&b64, scale).expect("decodes"),
                value,
                "{text}"
            );
        }
        // Java's BigInteger(12345).toByteArray() = [0x30, 0x39]
        assert_eq!(
            precise_base64(Decimal::from(12345), 0).as_deref(),
            Some("MDk=")
        );
    }

    #[test]
    fn numeric_with_and_without_typmod() {
        let fixed = col(oid::NUMERIC, (12 << 16) + 2 + 4);
        assert_eq!(
            fixed.convert("12.5").expect("ok"),
            json!(precise_base64(Decimal::new(1250, 2), 2))
        );
        assert_eq!(fixed.schema()["parameters"]["scale"], json!("2"));
        let free = col(oid::NUMERIC, -1);
        let v = free.convert("1.234").expect("ok");
        assert_eq!(v["scale"], json!(3));
        assert!(free.convert("NaN").is_err());
    }

    #[test]
    fn times_and_scalars() {
        assert_eq!(
            col(oid::TIMESTAMPTZ, -1)
                .convert("2026-01-01 10:30:00.123456+00")
                .expect("ok"),
            json!("2026-01-01T10:30:00.123456Z")
        );
        assert_eq!(
            col(oid::TIMESTAMPTZ, -1)
                .convert("2026-01-01 13:30:00+03")
                .expect("ok"),
            json!("2026-01-01T10:30:00Z")
        );
        assert_eq!(
            col(oid::TIMESTAMP, -1)
                .convert("1970-01-01 00:00:01.5")
                .expect("ok"),
            json!(1_500_000)
        );
        assert_eq!(
            col(oid::DATE, -1).convert("1970-01-03").expect("ok"),
            json!(2)
        );
        assert_eq!(col(oid::INT4, -1).convert("-7").expect("ok"), json!(-7));
        assert_eq!(col(oid::BOOL, -1).convert("t").expect("ok"), json!(true));
        assert_eq!(col(25, -1).convert("x").expect("ok"), json!("x"));
        assert!(col(oid::INT4, -1).convert("x").is_err());
    }
}
