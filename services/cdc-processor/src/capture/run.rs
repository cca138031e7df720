//! The capture loop: snapshot once, then stream; every batch is one Kafka transaction carrying
//! the change records and the new position; the slot is acknowledged only after it committed.
//!
//! Failures never end the process: the error is logged, `/health/ready` reports it (503 with
//! the reason), and the session starts over after `--retry-interval`. A dropped slot or
//! publication therefore shows as a clear, repeated error and a not-ready probe, not a crash loop.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_postgres::Client;
use trendstream_runtime::changelog::{TopicSpec, ensure_topics};
use trendstream_service::kafka::KafkaUnreachable;
use trendstream_service::ops::Readiness;

use super::config::CaptureConfig;
use super::envelope::{ChangeOp, KafkaRecord, SourceInfo, TableShape, change_records};
use super::kafka::{Sink, SinkError, read_offset};
use super::lsn::Lsn;
use super::offsets::{CaptureOffset, already_captured};
use super::pgoutput::{self, Message, pg_micros_to_epoch_ms};
use super::postgres::{self, PgError};
use super::values::ValueError;

/// Rows read per FETCH of the snapshot.
const SNAPSHOT_CHUNK: usize = 5000;
/// How long the start-up check waits for the brokers' metadata.
const KAFKA_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Postgres(#[from] PgError),
    #[error(transparent)]
    Kafka(#[from] SinkError),
    #[error(transparent)]
    Value(#[from] ValueError),
    #[error("change at {lsn}: {source}")]
    PgOutput {
        lsn: Lsn,
        #[source]
        source: pgoutput::PgOutputError,
    },
    #[error("change at {lsn} refers to relation {relation}, which was never described")]
    UnknownRelation { lsn: Lsn, relation: u32 },
    #[error("creating topics: {0}")]
    Topics(String),
    #[error(transparent)]
    Unreachable(#[from] KafkaUnreachable),
    #[error("offsets topic: stored position {0:?} is not an LSN")]
    BadStoredLsn(String),
}

/// The capture's metrics.
#[derive(Clone, Default)]
pub struct CaptureMetrics {
    pub records: Counter,
    pub transactions: Counter,
    pub snapshot_rows: Counter,
    pub committed_lsn: Gauge,
    pub failures: Counter,
}

impl CaptureMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "pg_capture_records",
            "Change records written to Kafka (tombstones included)",
            m.records.clone(),
        );
        registry.register(
            "pg_capture_transactions",
            "PostgreSQL transactions captured",
            m.transactions.clone(),
        );
        registry.register(
            "pg_capture_snapshot_rows",
            "Rows read by the initial snapshot",
            m.snapshot_rows.clone(),
        );
        registry.register(
            "pg_capture_committed_lsn",
            "WAL position committed to Kafka and acknowledged",
            m.committed_lsn.clone(),
        );
        registry.register(
            "pg_capture_failures",
            "Sessions that ended with an error",
            m.failures.clone(),
        );
        m
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Runs sessions until `stop`; each failure is reported and retried.
pub async fn run(
    config: CaptureConfig,
    readiness: Readiness,
    metrics: CaptureMetrics,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        match session(&config, &readiness, &metrics, &stop).await {
            Ok(()) => return,
            Err(err) => {
                metrics.failures.inc();
                tracing::error!(error = %err, retry_in = ?config.retry_interval, "capture failed");
                readiness.set_not_ready(err.to_string());
                let deadline = tokio::time::Instant::now() + config.retry_interval;
                while tokio::time::Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Blocking Kafka calls run off the async workers.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

async fn session(
    config: &CaptureConfig,
    readiness: &Readiness,
    metrics: &CaptureMetrics,
    stop: &AtomicBool,
) -> Result<(), CaptureError> {
    readiness.set_not_ready("connecting");
    let client = postgres::connect(&config.postgres_url).await?;
    let tables = postgres::publication_tables(&client, &config.publication).await?;
    let offsets_topic = config.offsets_topic();
    let kafka = config.kafka();
    blocking(|| kafka.check_reachable(KAFKA_CHECK_TIMEOUT))?;
    let mut specs: Vec<TopicSpec> = tables
        .iter()
        .map(|(schema, table)| TopicSpec {
            name: format!("{}.{schema}.{table}", config.topic_prefix),
            partitions: config.partitions,
            compacted: false,
        })
        .collect();
    ensure_topics(&kafka, config.replication_factor, &specs)
        .await
        .map_err(|e| CaptureError::Topics(e.to_string()))?;
    specs.clear();
    specs.push(TopicSpec {
        name: offsets_topic.clone(),
        partitions: 1,
        compacted: true,
    });
    ensure_topics(&kafka, config.replication_factor, &specs)
        .await
        .map_err(|e| CaptureError::Topics(e.to_string()))?;

    // Fence first: init_transactions aborts what a killed predecessor left open, so the
    // offsets read next are the last committed ones.
    let sink = blocking(|| Sink::connect(&kafka, &config.transactional_id(), &offsets_topic))?;
    let stored = blocking(|| read_offset(&kafka, &offsets_topic, &config.slot))?;
    let slot = postgres::slot_state(&client, &config.slot).await?;
    let mut position = match (stored, slot) {
        (Some(offset), Some(_)) => offset,
        (Some(offset), None) => {
            return Err(PgError::SlotMissing {
                slot: config.slot.clone(),
                lsn: offset.lsn,
            }
            .into());
        }
        (None, slot) => {
            if slot.is_some() {
                // Nothing was ever committed from this slot, so nothing downstream depends on
                // it: start over with a slot whose consistent point matches a new snapshot.
                tracing::info!(slot = %config.slot, "slot exists but no snapshot was committed; recreating it");
                postgres::drop_slot(&client, &config.slot).await?;
            }
            readiness.set_not_ready("taking the initial snapshot");
            snapshot(config, &client, &sink, &tables, metrics).await?
        }
    };
    let committed = position
        .lsn()
        .map_err(|_| CaptureError::BadStoredLsn(position.lsn.clone()))?;
    postgres::advance_slot(&client, &config.slot, committed).await?;
    metrics.committed_lsn.set(committed.as_i64());
    tracing::info!(slot = %config.slot, lsn = %committed, "streaming");
    readiness.set_ready();
    let mut stream = Stream {
        config,
        client: &client,
        sink: &sink,
        metrics,
        relations: HashMap::new(),
        committed,
        db: database_name(&client).await?,
        batches: 0,
    };
    while !stop.load(Ordering::SeqCst) {
        postgres::check_publication(&client, &config.publication).await?;
        let captured = stream.poll(&mut position).await?;
        readiness.set_ready();
        if captured == 0 {
            tokio::time::sleep(config.poll_interval).await;
        }
    }
    tracing::info!(lsn = %stream.committed, "stopped");
    Ok(())
}

/// Creates the slot, reads every table of the publication in one snapshot, and commits the
/// rows and the starting position in one Kafka transaction.
async fn snapshot(
    config: &CaptureConfig,
    client: &Client,
    sink: &Sink,
    tables: &[(String, String)],
    metrics: &CaptureMetrics,
) -> Result<CaptureOffset, CaptureError> {
    let slot_lsn = postgres::create_slot(client, &config.slot).await?;
    let bounds = postgres::begin_snapshot(client).await?;
    tracing::info!(slot = %config.slot, lsn = %slot_lsn, snapshot = ?bounds, "snapshot started");
    let db = database_name(client).await?;
    let ts_ms = now_ms();
    blocking(|| sink.begin())?;
    let mut pending: Option<(TableShape, Vec<pgoutput::Datum>)> = None;
    let mut rows = 0u64;
    for (schema, table) in tables {
        let shape = postgres::table_shape(client, schema, table).await?;
        let mut failure: Option<CaptureError> = None;
        postgres::read_table(client, &shape, SNAPSHOT_CHUNK, |chunk| {
            for row in chunk {
                // Hold one row back so the very last one can be marked `snapshot: last`.
                if let Some((prev_shape, prev_row)) = pending.replace((shape.clone(), row))
                    && let Err(err) = send_read(
                        config,
                        sink,
                        &prev_shape,
                        &prev_row,
                        "true",
                        slot_lsn,
                        ts_ms,
                        &db,
                    )
                {
                    failure = Some(err);
                    return Err(PgError::Protocol("snapshot aborted".into()));
                }
                rows += 1;
            }
            Ok(())
        })
        .await
        .map_err(|e| failure.take().unwrap_or(e.into()))?;
    }
    if let Some((shape, row)) = pending {
        send_read(config, sink, &shape, &row, "last", slot_lsn, ts_ms, &db)?;
    }
    postgres::end_snapshot(client).await?;
    let offset = CaptureOffset {
        slot: config.slot.clone(),
        lsn: slot_lsn.to_string(),
        snapshot: bounds,
    };
    if let Err(err) = blocking(|| sink.commit(&offset)) {
        blocking(|| sink.abort());
        return Err(err.into());
    }
    metrics.snapshot_rows.inc_by(rows);
    tracing::info!(rows, lsn = %slot_lsn, "snapshot committed");
    Ok(offset)
}

#[allow(clippy::too_many_arguments)]
fn send_read(
    config: &CaptureConfig,
    sink: &Sink,
    shape: &TableShape,
    row: &[pgoutput::Datum],
    marker: &'static str,
    lsn: Lsn,
    ts_ms: i64,
    db: &str,
) -> Result<(), CaptureError> {
    let source = SourceInfo {
        server: config.topic_prefix.clone(),
        db: db.to_owned(),
        ts_ms,
        tx_id: None,
        lsn,
        last_committed: None,
        snapshot: marker,
    };
    for record in change_records(shape, ChangeOp::Read, None, Some(row), &source, now_ms())? {
        blocking(|| sink.send(&record))?;
    }
    Ok(())
}

async fn database_name(client: &Client) -> Result<String, PgError> {
    let row = client
        .query_one("SELECT current_database()::text", &[])
        .await
        .map_err(|source| PgError::Sql {
            context: "reading the database name".into(),
            source,
        })?;
    Ok(row.get(0))
}

struct Stream<'a> {
    config: &'a CaptureConfig,
    client: &'a Client,
    sink: &'a Sink,
    metrics: &'a CaptureMetrics,
    relations: HashMap<u32, TableShape>,
    /// End of the last transaction committed to Kafka.
    committed: Lsn,
    /// The database name, for `source.db`.
    db: String,
    /// Batches committed by this process (for the test hook).
    batches: u64,
}

/// A transaction being assembled from the peeked messages.
struct OpenTransaction {
    xid: u32,
    commit_ts_ms: i64,
    records: Vec<KafkaRecord>,
}

impl Stream<'_> {
    /// One peek: whole transactions after the committed position, written in one Kafka
    /// transaction with the new position, then acknowledged. Returns the transactions captured.
    async fn poll(&mut self, position: &mut CaptureOffset) -> Result<usize, CaptureError> {
        let changes = postgres::peek(
            self.client,
            &self.config.slot,
            &self.config.publication,
            self.config.batch,
            &self.committed,
        )
        .await?;
        if changes.is_empty() {
            return Ok(0);
        }
        let db = self.db.clone();
        let mut open: Option<OpenTransaction> = None;
        let mut ready: Vec<KafkaRecord> = Vec::new();
        let mut end = self.committed;
        let mut transactions = 0usize;
        let mut skipped = 0usize;
        for change in &changes {
            let message =
                pgoutput::decode(&change.data).map_err(|source| CaptureError::PgOutput {
                    lsn: change.lsn,
                    source,
                })?;
            match message {
                Message::Begin { commit_ts, xid, .. } => {
                    open = Some(OpenTransaction {
                        xid,
                        commit_ts_ms: pg_micros_to_epoch_ms(commit_ts),
                        records: Vec::new(),
                    });
                }
                Message::Commit { end_lsn, .. } => {
                    let Some(tx) = open.take() else { continue };
                    // At or below the committed position: already in Kafka (committed, then
                    // killed before the acknowledgement). Seen by the snapshot: already there
                    // as a read.
                    if already_captured(end_lsn, tx.xid, self.committed, &position.snapshot) {
                        tracing::debug!(xid = tx.xid, %end_lsn, "transaction already captured; skipped");
                        skipped += 1;
                    } else {
                        ready.extend(tx.records);
                        transactions += 1;
                    }
                    end = end.max(end_lsn);
                }
                Message::Relation(relation) => {
                    // pgoutput describes each relation again in every decoding call; the catalog
                    // is only asked again when the description changed (DDL).
                    let unchanged = self.relations.get(&relation.id).is_some_and(|shape| {
                        shape.columns.len() == relation.columns.len()
                            && shape.columns.iter().zip(&relation.columns).all(|(a, b)| {
                                a.name == b.name
                                    && a.type_oid == b.type_oid
                                    && a.type_modifier == b.type_modifier
                            })
                    });
                    if !unchanged {
                        let shape = postgres::relation_shape(self.client, &relation).await?;
                        self.relations.insert(relation.id, shape);
                    }
                }
                Message::Insert { relation, new } => {
                    self.row_change(
                        &mut open,
                        change.lsn,
                        relation,
                        ChangeOp::Create,
                        None,
                        Some(&new),
                        &db,
                    )?;
                }
                Message::Update { relation, old, new } => {
                    self.row_change(
                        &mut open,
                        change.lsn,
                        relation,
                        ChangeOp::Update,
                        old.as_deref(),
                        Some(&new),
                        &db,
                    )?;
                }
                Message::Delete { relation, old } => {
                    self.row_change(
                        &mut open,
                        change.lsn,
                        relation,
                        ChangeOp::Delete,
                        Some(&old),
                        None,
                        &db,
                    )?;
                }
                Message::Truncate { .. } | Message::Other(_) => {}
            }
        }
        if end <= self.committed {
            return Ok(0);
        }
        let offset = CaptureOffset {
            slot: self.config.slot.clone(),
            lsn: end.to_string(),
            snapshot: position.snapshot.clone(),
        };
        let count = ready.len() as u64;
        blocking(|| -> Result<(), SinkError> {
            self.sink.begin()?;
            let sent = ready
                .iter()
                .try_for_each(|r| self.sink.send(r))
                .and_then(|()| self.sink.commit(&offset));
            if sent.is_err() {
                self.sink.abort();
            }
            sent
        })?;
        // Committed to Kafka: now, and only now, PostgreSQL may forget these changes.
        self.committed = end;
        *position = offset;
        self.metrics.records.inc_by(count);
        self.metrics.transactions.inc_by(transactions as u64);
        self.metrics.committed_lsn.set(end.as_i64());
        if skipped > 0 {
            tracing::info!(skipped, lsn = %end, "transactions already in Kafka (or in the snapshot) were skipped");
        }
        self.batches += 1;
        if self.config.test_abort_before_ack == Some(self.batches) {
            // Test hook: the crash window between the Kafka commit and the acknowledgement.
            tracing::warn!(
                batch = self.batches,
                "aborting before the acknowledgement (PG_CAPTURE_TEST_ABORT_BEFORE_ACK)"
            );
            std::process::abort();
        }
        postgres::advance_slot(self.client, &self.config.slot, end).await?;
        tracing::debug!(transactions, records = count, lsn = %end, "batch committed and acknowledged");
        Ok(transactions.max(1))
    }

    #[allow(clippy::too_many_arguments)]
    fn row_change(
        &self,
        open: &mut Option<OpenTransaction>,
        lsn: Lsn,
        relation: u32,
        op: ChangeOp,
        before: Option<&[pgoutput::Datum]>,
        after: Option<&[pgoutput::Datum]>,
        db: &str,
    ) -> Result<(), CaptureError> {
        let shape = self
            .relations
            .get(&relation)
            .ok_or(CaptureError::UnknownRelation { lsn, relation })?;
        let Some(tx) = open.as_mut() else {
            return Err(CaptureError::PgOutput {
                lsn,
                source: pgoutput::PgOutputError {
                    kind: 'I',
                    reason: "row change outside a transaction".into(),
                },
            });
        };
        let source = SourceInfo {
            server: self.config.topic_prefix.clone(),
            db: db.to_owned(),
            ts_ms: tx.commit_ts_ms,
            tx_id: Some(i64::from(tx.xid)),
            lsn,
            last_committed: Some(self.committed),
            snapshot: "false",
        };
        tx.records
            .extend(change_records(shape, op, before, after, &source, now_ms())?);
        Ok(())
    }
}
