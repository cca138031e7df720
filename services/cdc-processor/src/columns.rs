//! Typed access to the columns of a Debezium row image, with errors that name the column.
//!
//! Decimal and timestamp columns are decoded by `trendstream_events::debezium` (from the schema
//! when the converter sent one, else from [`DecodeSettings`]); this module adds the plain
//! column types and the choice of fallbacks.

use crate::error::MapError;
use serde_json::Value;
use trendstream_events::debezium::{ChangeRecord, DecimalMode, Image, TimestampEncoding};

/// How to read columns whose encoding only the schema would tell, for records without one
/// (the bare payload of `JsonConverter` with `schemas.enable=false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeSettings {
    /// The connector's `decimal.handling.mode` (with the columns' scale for `precise`).
    pub decimal_mode: DecimalMode,
    /// How an integer timestamp column is encoded (`time.precision.mode`); strings are always
    /// read as ISO 8601 (`ZonedTimestamp`).
    pub integer_timestamps: TimestampEncoding,
}

impl Default for DecodeSettings {
    /// Debezium's PostgreSQL defaults: `precise` decimals (the example tables use scale 2) and
    /// `adaptive` time precision (microseconds for `timestamp`).
    fn default() -> Self {
        Self {
            decimal_mode: DecimalMode::Precise { scale: 2 },
            integer_timestamps: TimestampEncoding::Micros,
        }
    }
}

fn invalid(image: Image, column: &str, message: impl std::fmt::Display) -> MapError {
    MapError::Invalid(format!("payload.{}.{column}: {message}", image_name(image)))
}

pub(crate) fn image_name(image: Image) -> &'static str {
    match image {
        Image::Before => "before",
        Image::After => "after",
    }
}

fn value<'r>(record: &'r ChangeRecord, image: Image, column: &str) -> Option<&'r Value> {
    record.row(image)?.get(column).filter(|v| !v.is_null())
}

/// A text column; numbers are accepted and rendered (an integer primary key used as an id).
pub fn text(record: &ChangeRecord, image: Image, column: &str) -> Result<Option<String>, MapError> {
    match value(record, image, column) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(invalid(
            image,
            column,
            format!("expected a string, got {other}"),
        )),
    }
}

/// A text column that must be present.
pub fn required_text(
    record: &ChangeRecord,
    image: Image,
    column: &str,
) -> Result<String, MapError> {
    text(record, image, column)?.ok_or_else(|| invalid(image, column, "missing or null"))
}

/// An integer column (Connect int16/int32/int64).
pub fn integer(record: &ChangeRecord, image: Image, column: &str) -> Result<Option<i64>, MapError> {
    match value(record, image, column) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| invalid(image, column, format!("expected an integer, got {n}"))),
        Some(other) => Err(invalid(
            image,
            column,
            format!("expected an integer, got {other}"),
        )),
    }
}

/// A decimal column, as the schema (or `settings`) says it is encoded.
pub fn decimal(
    record: &ChangeRecord,
    image: Image,
    column: &str,
    settings: &DecodeSettings,
) -> Result<Option<rust_decimal::Decimal>, MapError> {
    record
        .decimal(image, column, settings.decimal_mode)
        .map_err(|err| MapError::Decode(format!("payload.{}: {err}", image_name(image))))
}

/// A timestamp column in epoch ms: the schema's logical type, else ISO 8601 for strings and
/// `settings.integer_timestamps` for integers.
pub fn timestamp_ms(
    record: &ChangeRecord,
    image: Image,
    column: &str,
    settings: &DecodeSettings,
) -> Result<Option<i64>, MapError> {
    let fallback = match value(record, image, column) {
        None => return Ok(None),
        Some(Value::String(_)) => TimestampEncoding::Zoned,
        Some(_) => settings.integer_timestamps,
    };
    record
        .timestamp_ms(image, column, fallback)
        .map_err(|err| MapError::Decode(format!("payload.{}: {err}", image_name(image))))
}

/// The change's event time: the row's `updated_at` (then `created_at`) in `image`, else the
/// commit time in the database (`source.ts_ms`), else when the connector saw it (`ts_ms`).
pub fn event_time(
    record: &ChangeRecord,
    image: Option<Image>,
    settings: &DecodeSettings,
) -> Result<i64, MapError> {
    if let Some(image) = image {
        for column in ["updated_at", "created_at"] {
            if let Some(ts) = timestamp_ms(record, image, column, settings)? {
                return Ok(ts);
            }
        }
    }
    record
        .event
        .source
        .ts_ms
        .or(record.event.ts_ms)
        .ok_or_else(|| {
            MapError::Invalid(
                "no event time: the row has no updated_at/created_at and the event no source.ts_ms or ts_ms"
                    .into(),
            )
        })
}

/// A deterministic id part for the change's position: `lsn` for PostgreSQL, else the commit
/// time and transaction id (other connectors), so a replay of the same change repeats the id.
pub fn position(record: &ChangeRecord) -> String {
    let source = &record.event.source;
    match (source.lsn, source.tx_id, source.ts_ms) {
        (Some(lsn), _, _) => format!("lsn{lsn}"),
        (None, Some(tx), ts) => format!("tx{tx}.{}", ts.unwrap_or_default()),
        (None, None, Some(ts)) => format!("ts{ts}"),
        (None, None, None) => format!("ts{}", record.event.ts_ms.unwrap_or_default()),
    }
}
