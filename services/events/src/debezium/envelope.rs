//! The Debezium change-event payload: `before`, `after`, `source`, `op`, `ts_ms`,
//! `transaction`, and the transaction-metadata events of the `<prefix>.transaction` topic.
//!
//! Field names follow Debezium 2.x/3.x. Everything except `op` is optional on input so older
//! connector versions and other connectors still decode; unknown fields are ignored.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// A table row as Debezium sends it: column name to JSON value. Kept untyped because column
/// encodings (decimals as base64, timestamps as micros) depend on the schema and connector
/// settings; see [`super::ChangeRecord::decimal`] and [`super::ChangeRecord::timestamp_ms`].
pub type Row = Map<String, Value>;

/// What happened to the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// Insert.
    #[serde(rename = "c")]
    Create,
    /// Update; `before` is only complete with `REPLICA IDENTITY FULL`.
    #[serde(rename = "u")]
    Update,
    /// Delete; `after` is null and a tombstone usually follows.
    #[serde(rename = "d")]
    Delete,
    /// Row read by a snapshot (initial, ad hoc or incremental).
    #[serde(rename = "r")]
    Read,
    /// `TRUNCATE` of the table; no row.
    #[serde(rename = "t")]
    Truncate,
    /// Logical decoding message (`pg_logical_emit_message`); see `message`.
    #[serde(rename = "m")]
    Message,
}

/// Whether a record comes from a snapshot. Debezium 1.x sent a boolean, 2.x sends a string
/// (`"true"`, `"last"`, `"incremental"`, ...); both are accepted, unknown strings are kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Snapshot {
    True,
    False,
    First,
    FirstInDataCollection,
    LastInDataCollection,
    Last,
    Incremental,
    /// A value this crate does not know yet.
    Other(String),
}

impl Snapshot {
    /// True for every value except `false`.
    pub fn is_snapshot(&self) -> bool {
        !matches!(self, Self::False)
    }

    /// Debezium's string for the value.
    pub fn as_str(&self) -> &str {
        match self {
            Self::True => "true",
            Self::False => "false",
            Self::First => "first",
            Self::FirstInDataCollection => "first_in_data_collection",
            Self::LastInDataCollection => "last_in_data_collection",
            Self::Last => "last",
            Self::Incremental => "incremental",
            Self::Other(s) => s,
        }
    }

    fn from_name(s: &str) -> Self {
        match s {
            "true" => Self::True,
            "false" => Self::False,
            "first" => Self::First,
            "first_in_data_collection" => Self::FirstInDataCollection,
            "last_in_data_collection" => Self::LastInDataCollection,
            "last" => Self::Last,
            "incremental" => Self::Incremental,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl Serialize for Snapshot {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Snapshot {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SnapshotVisitor;
        impl Visitor<'_> for SnapshotVisitor {
            type Value = Snapshot;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean or a snapshot marker string")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Snapshot, E> {
                Ok(if v { Snapshot::True } else { Snapshot::False })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Snapshot, E> {
                Ok(Snapshot::from_name(v))
            }
        }
        deserializer.deserialize_any(SnapshotVisitor)
    }
}

/// Where the change came from. Positions (`lsn`, `txId`, `xmin`) are the PostgreSQL
/// connector's integers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Source {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
    /// Logical server name (`topic.prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Commit time in the database, epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts_us: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Snapshot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<String>,
    /// JSON text `["<last committed lsn>","<current lsn>"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(rename = "txId", default, skip_serializing_if = "Option::is_none")]
    pub tx_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xmin: Option<i64>,
}

impl Source {
    /// True when the record was produced by a snapshot rather than streamed from the WAL.
    pub fn is_snapshot(&self) -> bool {
        self.snapshot.as_ref().is_some_and(Snapshot::is_snapshot)
    }
}

/// Position of the event in its transaction (`provide.transaction.metadata=true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionBlock {
    /// `<txId>:<lsn>` for PostgreSQL.
    pub id: String,
    #[serde(default)]
    pub total_order: u64,
    #[serde(default)]
    pub data_collection_order: u64,
}

/// Payload of an `op: "m"` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogicalMessage {
    pub prefix: String,
    /// Base64 of the message bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// One change event payload. `T` is the row type: [`Row`] by default, or a typed struct via
/// [`super::ChangeRecord::row_as`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent<T = Row> {
    /// Row before the change (updates with full replica identity, deletes).
    #[serde(default)]
    pub before: Option<T>,
    /// Row after the change (creates, updates, snapshot reads).
    #[serde(default)]
    pub after: Option<T>,
    #[serde(default)]
    pub source: Source,
    pub op: Op,
    /// When the connector processed the event, epoch ms (not the commit time; that is
    /// `source.ts_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts_us: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<TransactionBlock>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<LogicalMessage>,
}

/// `BEGIN` or `END` of a transaction on the transaction-metadata topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TransactionStatus {
    Begin,
    End,
}

/// Events per table in a finished transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataCollectionCount {
    pub data_collection: String,
    pub event_count: u64,
}

/// A record of the `<prefix>.transaction` topic. Lets a consumer know how many change events
/// to expect per transaction before acting on it atomically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionMetadata {
    pub status: TransactionStatus,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts_ms: Option<i64>,
    /// Only on `END`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_count: Option<u64>,
    /// Only on `END`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_collections: Option<Vec<DataCollectionCount>>,
}
