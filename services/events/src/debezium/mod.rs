//! Debezium change events, as the cdc-processor reads them from `<prefix>.<schema>.<table>`.
//!
//! Accepts what Kafka Connect's `JsonConverter` writes in both of its settings:
//! `schemas.enable=true` gives `{"schema": {...}, "payload": {...}}`, `false` gives the bare
//! payload. The schema is kept ([`ChangeRecord::schema`]) because it is the only place that says
//! how a decimal or timestamp column is encoded.
//!
//! Null handling, matching Kafka's semantics:
//! - a null Kafka value (`None`) is a tombstone (Debezium emits one after each delete so
//!   compaction can drop the key);
//! - the JSON text `null` and an envelope whose `payload` is null are tombstones too (some
//!   converters write those for a null record);
//! - zero bytes are an error, not a tombstone: Kafka distinguishes a null value from an empty
//!   one, log compaction only removes nulls, and no Debezium converter writes empty values, so an
//!   empty value is a producer bug worth a dead-letter record.

mod envelope;
mod schema;
mod values;

use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde_json::Value;
use thiserror::Error;

pub use envelope::{
    ChangeEvent, DataCollectionCount, LogicalMessage, Op, Row, Snapshot, Source, TransactionBlock,
    TransactionMetadata, TransactionStatus,
};
pub use schema::ConnectSchema;
pub use values::{
    CONNECT_TIMESTAMP, DECIMAL, DecimalMode, MICRO_TIMESTAMP, NANO_TIMESTAMP, TIMESTAMP,
    TimestampEncoding, VARIABLE_SCALE_DECIMAL, ValueError, ZONED_TIMESTAMP, decode_decimal,
    decode_precise, micro_timestamp_to_millis, nano_timestamp_to_millis, timestamp_to_millis,
    zoned_timestamp_to_millis,
};

use crate::decode::{DecodeError, decode_unvalidated, decode_value};
use values::json_kind;

/// A Debezium record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DebeziumError {
    /// Zero-byte value; see the module docs for why this is not a tombstone.
    #[error("empty Kafka value: a tombstone is a null value, not zero bytes")]
    EmptyValue,
    /// Malformed JSON or envelope; the path says where (`payload.op`, `schema.fields[2]`, ...).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A column value does not match its encoding.
    #[error("column `{column}`: {source}")]
    Column {
        column: String,
        #[source]
        source: ValueError,
    },
}

/// Result of decoding one Kafka value from a Debezium topic.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// Null value: the key's row was deleted; nothing else to do.
    Tombstone,
    /// A change event (boxed: it is large and tombstones are frequent).
    Change(Box<ChangeRecord>),
}

/// A change event and the schema it came with.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRecord {
    /// The Connect schema of the whole value (`...Envelope`), when the converter sent one.
    pub schema: Option<ConnectSchema>,
    pub event: ChangeEvent<Row>,
}

/// Which row image of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    Before,
    After,
}

impl Image {
    fn field(self) -> &'static str {
        match self {
            Self::Before => "before",
            Self::After => "after",
        }
    }
}

impl ChangeRecord {
    /// The row image, if the event has it.
    pub fn row(&self, image: Image) -> Option<&Row> {
        match image {
            Image::Before => self.event.before.as_ref(),
            Image::After => self.event.after.as_ref(),
        }
    }

    /// The Connect schema of `column` in `image`, when a schema was sent.
    pub fn column_schema(&self, image: Image, column: &str) -> Option<&ConnectSchema> {
        self.schema.as_ref()?.field(image.field())?.field(column)
    }

    /// A decimal column, decoded as the schema says, or as `fallback` when no schema was sent
    /// (set it to the connector's `decimal.handling.mode`). `None` when the image or the
    /// column is absent or null.
    pub fn decimal(
        &self,
        image: Image,
        column: &str,
        fallback: DecimalMode,
    ) -> Result<Option<Decimal>, DebeziumError> {
        let Some(value) = self.column_value(image, column) else {
            return Ok(None);
        };
        let column_error = |source| DebeziumError::Column {
            column: column.to_owned(),
            source,
        };
        let mode = match self.column_schema(image, column) {
            Some(schema) => DecimalMode::from_schema(schema).map_err(column_error)?,
            None => fallback,
        };
        decode_decimal(value, mode).map(Some).map_err(column_error)
    }

    /// A timestamp column in epoch ms, decoded as the schema's logical type says, or as
    /// `fallback` when there is no schema or it names no timestamp type. `None` when the image
    /// or the column is absent or null.
    pub fn timestamp_ms(
        &self,
        image: Image,
        column: &str,
        fallback: TimestampEncoding,
    ) -> Result<Option<i64>, DebeziumError> {
        let Some(value) = self.column_value(image, column) else {
            return Ok(None);
        };
        let encoding = self
            .column_schema(image, column)
            .and_then(TimestampEncoding::from_schema)
            .unwrap_or(fallback);
        timestamp_to_millis(value, encoding)
            .map(Some)
            .map_err(|source| DebeziumError::Column {
                column: column.to_owned(),
                source,
            })
    }

    /// The row image deserialized into `T` (for tables whose columns need no logical-type
    /// decoding). Errors name the path, e.g. `payload.after.status`.
    pub fn row_as<T: DeserializeOwned>(&self, image: Image) -> Result<Option<T>, DebeziumError> {
        let Some(row) = self.row(image) else {
            return Ok(None);
        };
        let prefix = format!("payload.{}", image.field());
        Ok(Some(decode_value(Value::Object(row.clone()), &prefix)?))
    }

    fn column_value(&self, image: Image, column: &str) -> Option<&Value> {
        self.row(image)?.get(column).filter(|v| !v.is_null())
    }
}

/// Decodes a Kafka value from a Debezium change topic. `None` is a tombstone.
pub fn decode_change(value: Option<&[u8]>) -> Result<Decoded, DebeziumError> {
    let Some((schema, payload, prefix)) = unwrap_envelope(value)? else {
        return Ok(Decoded::Tombstone);
    };
    let schema = schema
        .map(|s| decode_value::<ConnectSchema>(s, "schema"))
        .transpose()?;
    let event = decode_value::<ChangeEvent<Row>>(payload, prefix)?;
    Ok(Decoded::Change(Box::new(ChangeRecord { schema, event })))
}

/// Decodes a Kafka value from the transaction-metadata topic (`<prefix>.transaction`), with
/// or without the schema envelope. `Ok(None)` for a tombstone.
pub fn decode_transaction_metadata(
    value: Option<&[u8]>,
) -> Result<Option<TransactionMetadata>, DebeziumError> {
    let Some((_schema, payload, prefix)) = unwrap_envelope(value)? else {
        return Ok(None);
    };
    Ok(Some(decode_value(payload, prefix)?))
}

/// Schema (if sent), payload object, and the path prefix for errors inside the payload.
type Unwrapped = (Option<Value>, Value, &'static str);

/// Splits `{"schema", "payload"}` into its parts, or takes the value as a bare payload.
/// `Ok(None)` for tombstones. A bare change payload always has `op` and never `payload`, which
/// is what tells the two shapes apart.
fn unwrap_envelope(value: Option<&[u8]>) -> Result<Option<Unwrapped>, DebeziumError> {
    let Some(bytes) = value else {
        return Ok(None);
    };
    if bytes.is_empty() {
        return Err(DebeziumError::EmptyValue);
    }
    let parsed: Value = decode_unvalidated(bytes)?;
    let (schema, payload, prefix) = match parsed {
        Value::Object(mut obj) if obj.contains_key("payload") && !obj.contains_key("op") => {
            let schema = obj.remove("schema").filter(|s| !s.is_null());
            let payload = obj.remove("payload").unwrap_or(Value::Null);
            (schema, payload, "payload")
        }
        other => (None, other, ""),
    };
    match payload {
        Value::Null => Ok(None),
        Value::Object(_) => Ok(Some((schema, payload, prefix))),
        other => Err(DecodeError::Malformed {
            path: if prefix.is_empty() { "(root)" } else { prefix }.to_owned(),
            message: format!("expected a change event object, got {}", json_kind(&other)),
        }
        .into()),
    }
}
