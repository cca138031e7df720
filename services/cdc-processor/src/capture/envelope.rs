//! Debezium-compatible change records: key and value as Kafka Connect's `JsonConverter` writes
//! them with `schemas.enable=true` (`{"schema": ..., "payload": ...}`), in the shape of
//! Debezium's PostgreSQL connector (`before`, `after`, `source`, `op`, `ts_ms`), to topic
//! `<prefix>.<schema>.<table>`, keyed by the primary key. A delete is followed by a tombstone
//! (null value), as Debezium does with `tombstones.on.delete=true`.

use serde_json::{Map, Value, json};

use super::lsn::Lsn;
use super::pgoutput::Datum;
use super::values::{ColumnType, UNAVAILABLE_VALUE, ValueError};

/// What Debezium's PostgreSQL connector reports as its version in `source.version`; ours says
/// which implementation wrote the record.
pub const SOURCE_VERSION: &str = "trendstream-pg-capture-1";

/// A captured table: its columns in order and its primary key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    pub schema: String,
    pub table: String,
    pub columns: Vec<ColumnType>,
    /// Primary-key column names; empty when the table has none (records then have no key).
    pub key_columns: Vec<String>,
}

impl TableShape {
    pub fn topic(&self, prefix: &str) -> String {
        format!("{prefix}.{}.{}", self.schema, self.table)
    }

    fn row(&self, tuple: &[Datum]) -> Result<Map<String, Value>, ValueError> {
        let mut row = Map::new();
        for (column, datum) in self.columns.iter().zip(tuple) {
            let value = match datum {
                Datum::Null => Value::Null,
                Datum::UnchangedToast => Value::String(UNAVAILABLE_VALUE.to_owned()),
                Datum::Text(text) => column.convert(text)?,
            };
            row.insert(column.name.clone(), value);
        }
        Ok(row)
    }

    fn value_schema(&self, prefix: &str) -> Value {
        let name = format!("{prefix}.{}.{}", self.schema, self.table);
        let fields: Vec<Value> = self.columns.iter().map(ColumnType::schema).collect();
        let row = |field: &str| json!({"type": "struct", "fields": fields, "optional": true, "name": format!("{name}.Value"), "field": field});
        let string = |field: &str, optional: bool| json!({"type": "string", "optional": optional, "field": field});
        let int64 = |field: &str, optional: bool| json!({"type": "int64", "optional": optional, "field": field});
        json!({
            "type": "struct",
            "optional": false,
            "name": format!("{name}.Envelope"),
            "version": 1,
            "fields": [
                row("before"),
                row("after"),
                {
                    "type": "struct",
                    "optional": false,
                    "name": "io.debezium.connector.postgresql.Source",
                    "field": "source",
                    "fields": [
                        string("version", false), string("connector", false), string("name", false),
                        int64("ts_ms", false),
                        {"type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
                         "parameters": {"allowed": "true,last,false,incremental"}, "default": "false", "field": "snapshot"},
                        string("db", false), string("sequence", true), string("schema", false), string("table", false),
                        int64("txId", true), int64("lsn", true), int64("xmin", true)
                    ]
                },
                string("op", false),
                int64("ts_ms", true)
            ]
        })
    }

    fn key(&self, prefix: &str, row: &Map<String, Value>) -> Option<Value> {
        if self.key_columns.is_empty() {
            return None;
        }
        let fields: Vec<Value> = self
            .columns
            .iter()
            .filter(|c| self.key_columns.contains(&c.name))
            .map(|c| {
                let mut schema = c.schema();
                schema["optional"] = Value::Bool(false);
                schema
            })
            .collect();
        let payload: Map<String, Value> = self
            .key_columns
            .iter()
            .map(|k| (k.clone(), row.get(k).cloned().unwrap_or(Value::Null)))
            .collect();
        Some(json!({
            "schema": {"type": "struct", "fields": fields, "optional": false,
                       "name": format!("{prefix}.{}.{}.Key", self.schema, self.table)},
            "payload": payload
        }))
    }
}

/// The change kinds the capture writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    Create,
    Update,
    Delete,
    /// A snapshot read.
    Read,
}

impl ChangeOp {
    fn code(self) -> &'static str {
        match self {
            ChangeOp::Create => "c",
            ChangeOp::Update => "u",
            ChangeOp::Delete => "d",
            ChangeOp::Read => "r",
        }
    }
}

/// Where a change came from (`source`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// The topic prefix (Debezium's logical server name).
    pub server: String,
    pub db: String,
    /// Commit time, epoch ms (snapshot: when the snapshot was taken).
    pub ts_ms: i64,
    pub tx_id: Option<i64>,
    pub lsn: Lsn,
    /// The end of the previous committed transaction, for `sequence`.
    pub last_committed: Option<Lsn>,
    /// `false`, or for snapshot reads `true` / `last`.
    pub snapshot: &'static str,
}

/// One Kafka record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    /// `None`: a tombstone.
    pub value: Option<Vec<u8>>,
}

/// The records of one row change: the change event, and a tombstone after a delete.
pub fn change_records(
    shape: &TableShape,
    op: ChangeOp,
    before: Option<&[Datum]>,
    after: Option<&[Datum]>,
    source: &SourceInfo,
    now_ms: i64,
) -> Result<Vec<KafkaRecord>, ValueError> {
    let before = before.map(|t| shape.row(t)).transpose()?;
    let after = after.map(|t| shape.row(t)).transpose()?;
    let key_row = after.as_ref().or(before.as_ref());
    let key = key_row
        .and_then(|row| shape.key(&source.server, row))
        .map(|k| k.to_string().into_bytes());
    let sequence = format!(
        "[{},\"{}\"]",
        source
            .last_committed
            .map_or_else(|| "null".to_owned(), |l| format!("\"{}\"", l.0)),
        source.lsn.0
    );
    let payload = json!({
        "before": before,
        "after": after,
        "source": {
            "version": SOURCE_VERSION,
            "connector": "postgresql",
            "name": source.server,
            "ts_ms": source.ts_ms,
            "snapshot": source.snapshot,
            "db": source.db,
            "sequence": sequence,
            "schema": shape.schema,
            "table": shape.table,
            "txId": source.tx_id,
            "lsn": source.lsn.as_i64(),
            "xmin": null
        },
        "op": op.code(),
        "ts_ms": now_ms
    });
    let value = json!({"schema": shape.value_schema(&source.server), "payload": payload});
    let topic = shape.topic(&source.server);
    let mut records = vec![KafkaRecord {
        topic: topic.clone(),
        key: key.clone(),
        value: Some(value.to_string().into_bytes()),
    }];
    if op == ChangeOp::Delete {
        records.push(KafkaRecord {
            topic,
            key,
            value: None,
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::values::oid;
    use trendstream_events::debezium::{Decoded, Image, Op, decode_change};

    fn shape() -> TableShape {
        let col = |name: &str, type_oid, type_modifier, optional| ColumnType {
            name: name.into(),
            type_oid,
            type_modifier,
            optional,
        };
        TableShape {
            schema: "public".into(),
            table: "orders".into(),
            columns: vec![
                col("id", 25, -1, false),
                col("amount", oid::NUMERIC, (12 << 16) + 6, false),
                col("updated_at", oid::TIMESTAMPTZ, -1, false),
            ],
            key_columns: vec!["id".into()],
        }
    }

    fn text(values: &[&str]) -> Vec<Datum> {
        values.iter().map(|v| Datum::Text((*v).into())).collect()
    }

    #[test]
    fn a_delete_is_a_debezium_event_the_events_crate_decodes_then_a_tombstone() {
        let source = SourceInfo {
            server: "shop".into(),
            db: "trendstream".into(),
            ts_ms: 1_767_225_600_000,
            tx_id: Some(42),
            lsn: Lsn(0x100),
            last_committed: Some(Lsn(0x80)),
            snapshot: "false",
        };
        let old = text(&["o-1", "5000.25", "2026-01-01 00:00:00+00"]);
        let records = change_records(&shape(), ChangeOp::Delete, Some(&old), None, &source, 1)
            .expect("records");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].topic, "shop.public.orders");
        assert_eq!(records[1].value, None);
        let key: Value =
            serde_json::from_slice(records[0].key.as_deref().expect("key")).expect("json");
        assert_eq!(key["payload"], json!({"id": "o-1"}));
        let Ok(Decoded::Change(change)) = decode_change(records[0].value.as_deref()) else {
            panic!("decodes");
        };
        assert_eq!(change.event.op, Op::Delete);
        assert_eq!(change.event.source.lsn, Some(0x100));
        assert_eq!(change.event.source.tx_id, Some(42));
        assert_eq!(
            change
                .decimal(
                    Image::Before,
                    "amount",
                    trendstream_events::debezium::DecimalMode::String
                )
                .expect("decimal"),
            Some(rust_decimal::Decimal::new(500025, 2))
        );
        assert_eq!(
            change
                .timestamp_ms(
                    Image::Before,
                    "updated_at",
                    trendstream_events::debezium::TimestampEncoding::Micros
                )
                .expect("ts"),
            Some(1_767_225_600_000)
        );
    }
}
