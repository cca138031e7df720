//! The capture's PostgreSQL side, over `tokio-postgres`: slot and publication checks, the
//! initial snapshot, and logical decoding through the SQL interface.
//!
//! Why the SQL interface (`pg_logical_slot_peek_binary_changes` + `pg_replication_slot_advance`)
//! and not `START_REPLICATION`: `tokio-postgres` 0.7 (the client the workspace already uses)
//! has no CopyBoth/replication-connection support, and the crates that do
//! (`pgwire-replication`, supabase `etl`) bring a second wire implementation with its own TLS
//! and auth stack for what two SQL functions give with the same guarantees: the same slot,
//! the same `pgoutput` messages, and `confirmed_flush_lsn` moves only when we advance it, which
//! we do only after the Kafka transaction committed. The cost is polling (one peek per
//! `--poll-interval` when idle) and re-decoding from the slot's `restart_lsn` on each peek,
//! which stays small because the slot is advanced after every batch.
//!
//! The initial snapshot: `CREATE_REPLICATION_SLOT ... EXPORT_SNAPSHOT` needs a replication
//! connection too. Its equivalent here: create the slot, then read the tables in a
//! `REPEATABLE READ` transaction and record that transaction's `pg_current_snapshot()`. Every
//! transaction committed before the slot's consistent point is visible in that snapshot;
//! streamed transactions that the snapshot already saw are skipped (see
//! [`super::offsets::SnapshotBounds::saw`]), so each change is either in the snapshot or in
//! the stream, never both and never neither.

use std::collections::HashMap;

use tokio_postgres::{Client, SimpleQueryMessage};
use trendstream_service::postgres::PgConnectError;

use super::envelope::TableShape;
use super::lsn::Lsn;
use super::offsets::SnapshotBounds;
use super::pgoutput::{Datum, Relation};
use super::values::ColumnType;

/// What went wrong on the PostgreSQL side.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(
        "replication slot {slot:?} does not exist (dropped?). Changes after {lsn} may be gone from the WAL; \
         to capture again from a fresh snapshot, delete this slot's record from the offsets topic \
         (or use a new --slot) and restart"
    )]
    SlotMissing { slot: String, lsn: String },
    #[error(
        "publication {0:?} does not exist (dropped?); create it again (sql/ecommerce.sql: \
         CREATE PUBLICATION ... FOR TABLE ...) and the capture resumes where it stopped"
    )]
    PublicationMissing(String),
    #[error("replication slot {slot:?} uses plugin {plugin:?}; pg-capture needs pgoutput")]
    WrongPlugin { slot: String, plugin: String },
    #[error("replication slot {slot:?} is in use by process {pid}")]
    SlotActive { slot: String, pid: i32 },
    #[error(transparent)]
    Connect(#[from] PgConnectError),
    #[error("{context}: {source}")]
    Sql {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{0}")]
    Protocol(String),
}

fn sql(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> PgError {
    let context = context.into();
    move |source| PgError::Sql { context, source }
}

/// Connects (over TLS as the URL's `sslmode` says) with the session settings the value
/// conversion relies on.
pub async fn connect(url: &str) -> Result<Client, PgError> {
    let client = trendstream_service::postgres::connect(url).await?;
    client
        .batch_execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 3; SET application_name = 'pg-capture'")
        .await
        .map_err(sql("setting the session time zone and date style"))?;
    Ok(client)
}

/// The slot's state, if it exists.
#[derive(Debug, Clone)]
pub struct SlotState {
    pub confirmed_flush: Option<Lsn>,
}

pub async fn slot_state(client: &Client, slot: &str) -> Result<Option<SlotState>, PgError> {
    let row = client
        .query_opt(
            "SELECT confirmed_flush_lsn::text, plugin::text, active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(sql("reading pg_replication_slots"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let plugin: Option<String> = row.get(1);
    if plugin.as_deref() != Some("pgoutput") {
        return Err(PgError::WrongPlugin {
            slot: slot.to_owned(),
            plugin: plugin.unwrap_or_default(),
        });
    }
    if let Some(pid) = row.get::<_, Option<i32>>(2) {
        return Err(PgError::SlotActive {
            slot: slot.to_owned(),
            pid,
        });
    }
    let confirmed: Option<String> = row.get(0);
    let confirmed_flush = confirmed
        .map(|t| {
            t.parse()
                .map_err(|e| PgError::Protocol(format!("confirmed_flush_lsn: {e}")))
        })
        .transpose()?;
    Ok(Some(SlotState { confirmed_flush }))
}

pub async fn drop_slot(client: &Client, slot: &str) -> Result<(), PgError> {
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .map_err(sql(format!("dropping the unused replication slot {slot}")))?;
    Ok(())
}

/// Creates the slot; returns its consistent point.
pub async fn create_slot(client: &Client, slot: &str) -> Result<Lsn, PgError> {
    let row = client
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .map_err(sql(format!("creating the replication slot {slot}")))?;
    let text: String = row.get(0);
    text.parse()
        .map_err(|e| PgError::Protocol(format!("slot lsn: {e}")))
}

pub async fn check_publication(client: &Client, publication: &str) -> Result<(), PgError> {
    let row = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(sql("reading pg_publication"))?;
    match row {
        Some(_) => Ok(()),
        None => Err(PgError::PublicationMissing(publication.to_owned())),
    }
}

/// Moves the slot's `confirmed_flush_lsn` to `lsn` (never backwards: PostgreSQL refuses that).
pub async fn advance_slot(client: &Client, slot: &str, lsn: Lsn) -> Result<(), PgError> {
    let Some(state) = slot_state(client, slot).await? else {
        return Err(PgError::SlotMissing {
            slot: slot.to_owned(),
            lsn: lsn.to_string(),
        });
    };
    if state.confirmed_flush.is_some_and(|c| c >= lsn) {
        return Ok(());
    }
    client
        .execute(
            "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)",
            &[&slot, &lsn.to_string()],
        )
        .await
        .map_err(sql(format!("acknowledging {lsn} on slot {slot}")))?;
    Ok(())
}

/// One row of `pg_logical_slot_peek_binary_changes`.
pub struct RawChange {
    pub lsn: Lsn,
    pub data: Vec<u8>,
}

/// Decoded changes after the slot's confirmed position, whole transactions, about `limit`
/// changes at most (PostgreSQL finishes the transaction it is in).
pub async fn peek(
    client: &Client,
    slot: &str,
    publication: &str,
    limit: i32,
    committed: &Lsn,
) -> Result<Vec<RawChange>, PgError> {
    let rows = client
        .query(
            "SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2, \
             'proto_version', '1', 'publication_names', $3)",
            &[&slot, &limit, &publication],
        )
        .await
        .map_err(|source| classify(source, slot, publication, committed))?;
    rows.iter()
        .map(|row| {
            let lsn: String = row.get(0);
            Ok(RawChange {
                lsn: lsn
                    .parse()
                    .map_err(|e| PgError::Protocol(format!("change lsn: {e}")))?,
                data: row.get(1),
            })
        })
        .collect()
}

/// Turns "does not exist" errors of a peek into the clear errors operators act on.
fn classify(
    source: tokio_postgres::Error,
    slot: &str,
    publication: &str,
    committed: &Lsn,
) -> PgError {
    let message = source
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_default();
    if message.contains("replication slot") && message.contains("does not exist") {
        return PgError::SlotMissing {
            slot: slot.to_owned(),
            lsn: committed.to_string(),
        };
    }
    if message.contains("publication") && message.contains("does not exist") {
        return PgError::PublicationMissing(publication.to_owned());
    }
    PgError::Sql {
        context: format!("reading changes from slot {slot}"),
        source,
    }
}

/// A table's columns (in order, with nullability) and primary key, from the catalog.
pub async fn table_shape(
    client: &Client,
    schema: &str,
    table: &str,
) -> Result<TableShape, PgError> {
    let qualified = format!("{}.{}", quote_ident(schema), quote_ident(table));
    let columns = client
        .query(
            "SELECT a.attname::text, a.atttypid, a.atttypmod, a.attnotnull \
             FROM pg_attribute a WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 \
             AND NOT a.attisdropped ORDER BY a.attnum",
            &[&qualified],
        )
        .await
        .map_err(sql(format!("reading the columns of {qualified}")))?
        .iter()
        .map(|row| ColumnType {
            name: row.get(0),
            type_oid: row.get(1),
            type_modifier: row.get(2),
            optional: !row.get::<_, bool>(3),
        })
        .collect();
    let key_columns = client
        .query(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = $1::text::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
            &[&qualified],
        )
        .await
        .map_err(sql(format!("reading the primary key of {qualified}")))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    Ok(TableShape {
        schema: schema.to_owned(),
        table: table.to_owned(),
        columns,
        key_columns,
    })
}

/// The shape of a streamed relation: its columns as the Relation message says (that is the
/// order of the tuples), nullability and key from the catalog.
pub async fn relation_shape(client: &Client, relation: &Relation) -> Result<TableShape, PgError> {
    let catalog = table_shape(client, &relation.namespace, &relation.name).await?;
    let optional: HashMap<&str, bool> = catalog
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.optional))
        .collect();
    Ok(TableShape {
        schema: relation.namespace.clone(),
        table: relation.name.clone(),
        columns: relation
            .columns
            .iter()
            .map(|c| ColumnType {
                name: c.name.clone(),
                type_oid: c.type_oid,
                type_modifier: c.type_modifier,
                optional: optional.get(c.name.as_str()).copied().unwrap_or(true),
            })
            .collect(),
        key_columns: catalog.key_columns,
    })
}

/// The tables of the publication, `(schema, table)`.
pub async fn publication_tables(
    client: &Client,
    publication: &str,
) -> Result<Vec<(String, String)>, PgError> {
    check_publication(client, publication).await?;
    Ok(client
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1, 2",
            &[&publication],
        )
        .await
        .map_err(sql("reading pg_publication_tables"))?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

/// Starts the snapshot transaction; returns what it sees.
pub async fn begin_snapshot(client: &Client) -> Result<SnapshotBounds, PgError> {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(sql("starting the snapshot transaction"))?;
    let row = client
        .query_one("SELECT pg_current_snapshot()::text", &[])
        .await
        .map_err(sql("reading the snapshot"))?;
    let text: String = row.get(0);
    text.parse().map_err(|e| PgError::Protocol(format!("{e}")))
}

/// Reads a table in the snapshot transaction in chunks, as text values in the shape's column
/// order, calling `each` per chunk.
pub async fn read_table<F>(
    client: &Client,
    shape: &TableShape,
    chunk: usize,
    mut each: F,
) -> Result<u64, PgError>
where
    F: FnMut(Vec<Vec<Datum>>) -> Result<(), PgError>,
{
    let columns: Vec<String> = shape.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let qualified = format!(
        "{}.{}",
        quote_ident(&shape.schema),
        quote_ident(&shape.table)
    );
    let order = if shape.key_columns.is_empty() {
        String::new()
    } else {
        let keys: Vec<String> = shape.key_columns.iter().map(|k| quote_ident(k)).collect();
        format!(" ORDER BY {}", keys.join(", "))
    };
    client
        .batch_execute(&format!(
            "DECLARE pg_capture_snapshot NO SCROLL CURSOR FOR SELECT {} FROM {qualified}{order}",
            columns.join(", ")
        ))
        .await
        .map_err(sql(format!("reading {qualified}")))?;
    let mut total = 0;
    loop {
        let messages = client
            .simple_query(&format!("FETCH {chunk} FROM pg_capture_snapshot"))
            .await
            .map_err(sql(format!("reading {qualified}")))?;
        let rows: Vec<Vec<Datum>> = messages
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| match row.get(i) {
                            None => Datum::Null,
                            Some(text) => Datum::Text(text.to_owned()),
                        })
                        .collect(),
                ),
                _ => None,
            })
            .collect();
        if rows.is_empty() {
            break;
        }
        total += rows.len() as u64;
        each(rows)?;
    }
    client
        .batch_execute("CLOSE pg_capture_snapshot")
        .await
        .map_err(sql("closing the snapshot cursor"))?;
    Ok(total)
}

pub async fn end_snapshot(client: &Client) -> Result<(), PgError> {
    client
        .batch_execute("COMMIT")
        .await
        .map_err(sql("ending the snapshot transaction"))
}

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
