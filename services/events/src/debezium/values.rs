//! Column values as Debezium encodes them: decimals (`decimal.handling.mode`) and timestamps
//! (`time.precision.mode`), converted to [`Decimal`] and epoch milliseconds.

use std::str::FromStr;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use rust_decimal::Decimal;
use serde_json::Value;
use thiserror::Error;

use super::schema::ConnectSchema;
use crate::time::{EventTime, TimeError, snippet};

/// Connect's fixed-scale decimal (`decimal.handling.mode=precise`).
pub const DECIMAL: &str = "org.apache.kafka.connect.data.Decimal";
/// Debezium's decimal for `NUMERIC` columns without a declared scale.
pub const VARIABLE_SCALE_DECIMAL: &str = "io.debezium.data.VariableScaleDecimal";
/// Epoch milliseconds (`TIMESTAMP(0..3)` without time zone).
pub const TIMESTAMP: &str = "io.debezium.time.Timestamp";
/// Epoch microseconds (`TIMESTAMP(4..6)` without time zone, PostgreSQL's default).
pub const MICRO_TIMESTAMP: &str = "io.debezium.time.MicroTimestamp";
/// Epoch nanoseconds.
pub const NANO_TIMESTAMP: &str = "io.debezium.time.NanoTimestamp";
/// ISO 8601 string with offset (`TIMESTAMPTZ`).
pub const ZONED_TIMESTAMP: &str = "io.debezium.time.ZonedTimestamp";
/// Connect's own timestamp (`time.precision.mode=connect`), epoch milliseconds.
pub const CONNECT_TIMESTAMP: &str = "org.apache.kafka.connect.data.Timestamp";

/// Connect writes standard base64 with padding; accept it without padding too.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a column value could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValueError {
    #[error("expected {expected}, got {found}")]
    Type {
        expected: &'static str,
        found: &'static str,
    },
    #[error("invalid base64 decimal bytes: {0}")]
    Base64(String),
    #[error("decimal bytes are empty")]
    EmptyBytes,
    #[error("decimal does not fit rust_decimal (96-bit mantissa, scale at most 28)")]
    OutOfRange,
    #[error("invalid decimal text {0:?}")]
    DecimalText(String),
    #[error("decimal schema has no valid `scale` parameter")]
    MissingScale,
    #[error("schema type `{0}` is not a decimal encoding")]
    NotDecimal(String),
    #[error(transparent)]
    Time(#[from] TimeError),
}

/// How a decimal column is encoded, mirroring Debezium's `decimal.handling.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalMode {
    /// `precise`: base64 of the unscaled value as big-endian two's-complement bytes; the scale
    /// comes from the schema's `scale` parameter.
    Precise { scale: u32 },
    /// `precise` for unconstrained `NUMERIC`: an object `{"scale": n, "value": "<base64>"}`.
    VariableScale,
    /// `string`: the decimal as text, exact.
    String,
    /// `double`: a JSON number. Debezium already rounded the column to an IEEE double, so only
    /// about 15-17 significant digits survive; this converts the number's shortest decimal
    /// representation (0.1 stays 0.1) but cannot restore digits lost upstream. Use `precise`
    /// or `string` for money.
    Double,
}

impl DecimalMode {
    /// Reads the mode from a column's Connect schema. Integer column types are accepted as
    /// [`DecimalMode::Double`], which converts integers exactly.
    pub fn from_schema(schema: &ConnectSchema) -> Result<DecimalMode, ValueError> {
        if schema.is_named(DECIMAL) {
            return schema
                .decimal_scale()
                .map(|scale| DecimalMode::Precise { scale })
                .ok_or(ValueError::MissingScale);
        }
        if schema.is_named(VARIABLE_SCALE_DECIMAL) {
            return Ok(DecimalMode::VariableScale);
        }
        match schema.schema_type.as_str() {
            "string" => Ok(DecimalMode::String),
            "float64" | "float32" | "int8" | "int16" | "int32" | "int64" => Ok(DecimalMode::Double),
            other => Err(ValueError::NotDecimal(snippet(other))),
        }
    }
}

/// Converts a decimal column value encoded in `mode`.
pub fn decode_decimal(value: &Value, mode: DecimalMode) -> Result<Decimal, ValueError> {
    match mode {
        DecimalMode::Precise { scale } => {
            decode_precise(expect_str(value, "a base64 string")?, scale)
        }
        DecimalMode::VariableScale => decode_variable_scale(value),
        DecimalMode::String => parse_decimal_text(expect_str(value, "a decimal string")?),
        DecimalMode::Double => match value {
            Value::Number(n) => parse_decimal_text(&n.to_string()),
            other => Err(type_error("a JSON number", other)),
        },
    }
}

/// Decodes Connect's decimal bytes: base64 text of the unscaled value in big-endian two's
/// complement (Java's `BigInteger.toByteArray()`), divided by 10^`scale`.
pub fn decode_precise(base64_text: &str, scale: u32) -> Result<Decimal, ValueError> {
    let bytes = BASE64
        .decode(base64_text)
        .map_err(|e| ValueError::Base64(e.to_string()))?;
    let unscaled = twos_complement_to_i128(&bytes)?;
    Decimal::try_from_i128_with_scale(unscaled, scale).map_err(|_| ValueError::OutOfRange)
}

fn twos_complement_to_i128(bytes: &[u8]) -> Result<i128, ValueError> {
    let mut bytes = bytes;
    // Leading 0x00 / 0xFF bytes that only repeat the sign carry no value; drop them so a
    // non-minimal encoding of a small number still fits.
    while bytes.len() > 16
        && let [first, rest @ ..] = bytes
        && let Some(next) = rest.first()
        && ((*first == 0x00 && next & 0x80 == 0) || (*first == 0xFF && next & 0x80 != 0))
    {
        bytes = rest;
    }
    let Some(first) = bytes.first() else {
        return Err(ValueError::EmptyBytes);
    };
    if bytes.len() > 16 {
        return Err(ValueError::OutOfRange);
    }
    let init: i128 = if first & 0x80 != 0 { -1 } else { 0 };
    Ok(bytes
        .iter()
        .fold(init, |acc, b| (acc << 8) | i128::from(*b)))
}

fn decode_variable_scale(value: &Value) -> Result<Decimal, ValueError> {
    let Value::Object(obj) = value else {
        return Err(type_error("an object with `scale` and `value`", value));
    };
    let scale = obj
        .get("scale")
        .and_then(Value::as_u64)
        .and_then(|s| u32::try_from(s).ok())
        .ok_or(ValueError::MissingScale)?;
    let text = obj
        .get("value")
        .map(|v| expect_str(v, "a base64 string"))
        .unwrap_or(Err(ValueError::EmptyBytes))?;
    decode_precise(text, scale)
}

fn parse_decimal_text(text: &str) -> Result<Decimal, ValueError> {
    Decimal::from_str(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| ValueError::DecimalText(snippet(text)))
}

/// How a timestamp column is encoded, from Debezium's `time.precision.mode` and column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampEncoding {
    /// Epoch milliseconds (`io.debezium.time.Timestamp`, Connect `Timestamp`).
    Millis,
    /// Epoch microseconds (`io.debezium.time.MicroTimestamp`).
    Micros,
    /// Epoch nanoseconds (`io.debezium.time.NanoTimestamp`).
    Nanos,
    /// ISO 8601 text with offset (`io.debezium.time.ZonedTimestamp`).
    Zoned,
}

impl TimestampEncoding {
    /// The encoding named by a column's schema, if it is a known timestamp type.
    pub fn from_schema(schema: &ConnectSchema) -> Option<TimestampEncoding> {
        match schema.name.as_deref()? {
            TIMESTAMP | CONNECT_TIMESTAMP => Some(Self::Millis),
            MICRO_TIMESTAMP => Some(Self::Micros),
            NANO_TIMESTAMP => Some(Self::Nanos),
            ZONED_TIMESTAMP => Some(Self::Zoned),
            _ => None,
        }
    }
}

/// Converts a timestamp column value to epoch milliseconds.
pub fn timestamp_to_millis(value: &Value, encoding: TimestampEncoding) -> Result<i64, ValueError> {
    match encoding {
        TimestampEncoding::Zoned => {
            zoned_timestamp_to_millis(expect_str(value, "an ISO 8601 string")?)
        }
        TimestampEncoding::Millis => expect_i64(value),
        TimestampEncoding::Micros => expect_i64(value).map(micro_timestamp_to_millis),
        TimestampEncoding::Nanos => expect_i64(value).map(nano_timestamp_to_millis),
    }
}

/// `MicroTimestamp` to epoch ms, rounding toward the past (floor) so that pre-1970 values
/// keep their order and a timestamp never moves forward in time.
pub const fn micro_timestamp_to_millis(micros: i64) -> i64 {
    micros.div_euclid(1_000)
}

/// `NanoTimestamp` to epoch ms, rounding toward the past.
pub const fn nano_timestamp_to_millis(nanos: i64) -> i64 {
    nanos.div_euclid(1_000_000)
}

/// `ZonedTimestamp` (e.g. `2024-01-15T10:30:00.123456Z`) to epoch ms.
pub fn zoned_timestamp_to_millis(text: &str) -> Result<i64, ValueError> {
    Ok(EventTime::parse_rfc3339(text)?.millis())
}

fn expect_str<'v>(value: &'v Value, expected: &'static str) -> Result<&'v str, ValueError> {
    value.as_str().ok_or_else(|| type_error(expected, value))
}

fn expect_i64(value: &Value) -> Result<i64, ValueError> {
    match value {
        Value::Number(n) => n.as_i64().ok_or(ValueError::Type {
            expected: "an integer in i64 range",
            found: if n.is_f64() {
                "a float"
            } else {
                "a too large integer"
            },
        }),
        other => Err(type_error("an integer", other)),
    }
}

fn type_error(expected: &'static str, found: &Value) -> ValueError {
    ValueError::Type {
        expected,
        found: json_kind(found),
    }
}

/// "a string", "an array", ... for error messages.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
