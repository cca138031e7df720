//! Partition-owned state: one RocksDB instance per input partition, a column family per store.
//!
//! Writes go to an in-memory overlay first. At commit the runtime sends the overlay to the
//! stores' changelog topics inside the Kafka transaction, commits, and only then writes it to
//! RocksDB together with the changelog positions it reached ([`PartitionState::apply`]). So the
//! local database never holds anything the transaction log does not, and after a crash the
//! state is the database plus the changelog from the recorded positions: replaying that suffix
//! is idempotent (last write per key wins, in log order).
//!
//! While a transaction commits, processing goes on: [`PartitionState::freeze`] sets the
//! committing writes aside (reads still see them) and new writes start a fresh overlay; the
//! frozen writes reach RocksDB when their commit succeeds, and an abort drops both.
//!
//! The runtime's own per-partition state (watermark clock, timers) lives in the changelogged
//! store [`RUNTIME_STORE`]; changelog positions live in a local-only column family.

use crate::processor::Timer;
use crate::upgrade::EpochMark;
use crate::watermark::PartitionClock;
use rocksdb::checkpoint::Checkpoint;
use rocksdb::{ColumnFamilyDescriptor, DB, Options, WriteBatch};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The runtime's own changelogged store: the partition's clock and its timers.
pub const RUNTIME_STORE: &str = "__runtime";
const META_CF: &str = "__meta";
const CLOCK_KEY: &[u8] = b"clock";
const TIMER_PREFIX: &str = "timer/";
const POSITION_PREFIX: &str = "changelog-position/";
const EPOCH_KEY: &[u8] = b"upgrade-epoch";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("partition {partition}: RocksDB at {path}: {source}")]
    Db {
        partition: i32,
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error("partition {partition}: {path}: {source}")]
    Io {
        partition: i32,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("partition {partition}: unknown state store {store:?}")]
    UnknownStore { partition: i32, store: String },
    #[error("partition {partition}: store {store}, key {key:?}: value does not decode: {source}")]
    Decode {
        partition: i32,
        store: String,
        key: String,
        source: serde_json::Error,
    },
    #[error("partition {partition}: cannot encode a value for store {store}: {source}")]
    Encode {
        partition: i32,
        store: String,
        source: serde_json::Error,
    },
}

/// A pending write: store index, key, new value (`None` deletes).
pub type Change<'a> = (usize, &'a [u8], Option<&'a [u8]>);

pub struct PartitionState {
    partition: i32,
    path: PathBuf,
    db: DB,
    /// Changelogged stores; index = position in this list. [`RUNTIME_STORE`] is last.
    stores: Vec<String>,
    overlay: HashMap<(usize, Vec<u8>), Option<Vec<u8>>>,
    /// The writes of the transaction being committed (see [`Self::freeze`]).
    frozen: HashMap<(usize, Vec<u8>), Option<Vec<u8>>>,
    timers: BTreeSet<Timer>,
    clock: PartitionClock,
    /// Undo log of the record being processed, so a failing record leaves no trace.
    journal: Vec<Undo>,
    journal_clock: PartitionClock,
    /// Wall-clock time of the last input record, for idle detection.
    pub last_record: Instant,
    /// The stateless epoch that started this state, if one did (see [`crate::upgrade`]).
    epoch_mark: Option<EpochMark>,
}

enum Undo {
    Write {
        slot: (usize, Vec<u8>),
        previous: Option<Option<Vec<u8>>>,
    },
    TimerAdded(Timer),
    TimerRemoved(Timer),
}

impl PartitionState {
    /// Opens (or creates) the partition's database under `path` with `stores`.
    pub fn open(path: &Path, partition: i32, stores: &[&str]) -> Result<Self, StateError> {
        let mut all: Vec<String> = stores.iter().map(|s| (*s).to_owned()).collect();
        all.push(RUNTIME_STORE.to_owned());
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let families = all
            .iter()
            .map(String::as_str)
            .chain([META_CF])
            .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db =
            DB::open_cf_descriptors(&options, path, families).map_err(|source| StateError::Db {
                partition,
                path: path.to_owned(),
                source,
            })?;
        let mut state = Self {
            partition,
            path: path.to_owned(),
            db,
            stores: all,
            overlay: HashMap::new(),
            frozen: HashMap::new(),
            timers: BTreeSet::new(),
            clock: PartitionClock::default(),
            journal: Vec::new(),
            journal_clock: PartitionClock::default(),
            last_record: Instant::now(),
            epoch_mark: None,
        };
        state.load_runtime()?;
        let mark = state
            .db
            .get_cf(state.cf(META_CF)?, EPOCH_KEY)
            .map_err(|source| state.db_error(source))?;
        state.epoch_mark = mark.and_then(|m| EpochMark::decode(&String::from_utf8_lossy(&m)));
        Ok(state)
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The changelogged stores, by index.
    pub fn stores(&self) -> &[String] {
        &self.stores
    }

    pub fn clock(&self) -> PartitionClock {
        self.clock
    }

    /// Feeds an event time to the clock; persists the clock when the watermark moved.
    pub fn observe(
        &mut self,
        event_time: i64,
        max_out_of_orderness: i64,
    ) -> Result<bool, StateError> {
        let before = self.clock;
        let advanced = self.clock.observe(event_time, max_out_of_orderness);
        if self.clock != before {
            self.write_clock()?;
        }
        Ok(advanced)
    }

    /// Moves the watermark forward (idle partitions); true when it moved.
    pub fn advance_watermark(&mut self, watermark: i64) -> Result<bool, StateError> {
        let advanced = self.clock.advance_to(watermark);
        if advanced {
            self.write_clock()?;
        }
        Ok(advanced)
    }

    fn write_clock(&mut self) -> Result<(), StateError> {
        let value = self.encode(RUNTIME_STORE, &self.clock)?;
        self.write(self.runtime_index(), CLOCK_KEY.to_vec(), Some(value));
        Ok(())
    }

    pub fn get<V: DeserializeOwned>(
        &self,
        store: &str,
        key: &str,
    ) -> Result<Option<V>, StateError> {
        let index = self.store_index(store)?;
        let Some(bytes) = self.read(index, key.as_bytes())? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Decode {
                partition: self.partition,
                store: store.to_owned(),
                key: key.to_owned(),
                source,
            })
    }

    pub fn put<V: Serialize>(
        &mut self,
        store: &str,
        key: &str,
        value: &V,
    ) -> Result<(), StateError> {
        let index = self.store_index(store)?;
        let bytes = self.encode(store, value)?;
        self.write(index, key.as_bytes().to_vec(), Some(bytes));
        Ok(())
    }

    pub fn delete(&mut self, store: &str, key: &str) -> Result<(), StateError> {
        let index = self.store_index(store)?;
        self.write(index, key.as_bytes().to_vec(), None);
        Ok(())
    }

    pub fn set_timer(&mut self, timer: Timer) -> Result<(), StateError> {
        let key = timer_key(&timer);
        if self.timers.insert(timer.clone()) {
            self.journal.push(Undo::TimerAdded(timer));
            self.write(self.runtime_index(), key, Some(Vec::new()));
        }
        Ok(())
    }

    pub fn delete_timer(&mut self, timer: &Timer) -> Result<(), StateError> {
        if self.timers.remove(timer) {
            self.journal.push(Undo::TimerRemoved(timer.clone()));
            self.write(self.runtime_index(), timer_key(timer), None);
        }
        Ok(())
    }

    /// Starts the undo log for one record (or timer callback).
    pub fn begin_record(&mut self) {
        self.journal.clear();
        self.journal_clock = self.clock;
    }

    /// Undoes everything since [`Self::begin_record`].
    pub fn rollback_record(&mut self) {
        while let Some(undo) = self.journal.pop() {
            match undo {
                Undo::Write { slot, previous } => match previous {
                    Some(value) => {
                        self.overlay.insert(slot, value);
                    }
                    None => {
                        self.overlay.remove(&slot);
                    }
                },
                Undo::TimerAdded(timer) => {
                    self.timers.remove(&timer);
                }
                Undo::TimerRemoved(timer) => {
                    self.timers.insert(timer);
                }
            }
        }
        self.clock = self.journal_clock;
    }

    /// Removes and returns the earliest timer due at `watermark`, if any.
    pub fn pop_due_timer(&mut self, watermark: i64) -> Option<Timer> {
        let first = self.timers.first()?;
        if first.time > watermark {
            return None;
        }
        let timer = self.timers.pop_first()?;
        self.write(self.runtime_index(), timer_key(&timer), None);
        Some(timer)
    }

    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// The writes of the record being processed (since [`Self::begin_record`]), with the
    /// values they left.
    pub fn record_writes(&self) -> impl Iterator<Item = Change<'_>> {
        self.journal.iter().filter_map(|undo| match undo {
            Undo::Write { slot, .. } => self
                .overlay
                .get_key_value(slot)
                .map(|((store, key), value)| (*store, key.as_slice(), value.as_deref())),
            Undo::TimerAdded(_) | Undo::TimerRemoved(_) => None,
        })
    }

    /// True when there are writes not yet committed.
    pub fn has_changes(&self) -> bool {
        !self.overlay.is_empty()
    }

    /// The writes of the open transaction, for the changelog.
    pub fn changes(&self) -> impl Iterator<Item = Change<'_>> {
        self.overlay
            .iter()
            .map(|((store, key), value)| (*store, key.as_slice(), value.as_deref()))
    }

    /// Sets the open transaction's writes aside while it commits (after its changelog records
    /// were sent); later writes go to a fresh overlay. Reads see the newer value first.
    pub fn freeze(&mut self) {
        debug_assert!(self.frozen.is_empty(), "one transaction commits at a time");
        self.journal.clear();
        let overlay = std::mem::take(&mut self.overlay);
        self.frozen.extend(overlay);
    }

    /// Writes the frozen (now committed) writes and the changelog positions reached (store
    /// index → next offset) to RocksDB atomically.
    pub fn apply(&mut self, positions: &[(usize, i64)]) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        for ((store, key), value) in self.frozen.drain() {
            let cf =
                self.db
                    .cf_handle(&self.stores[store])
                    .ok_or_else(|| StateError::UnknownStore {
                        partition: self.partition,
                        store: self.stores[store].clone(),
                    })?;
            match value {
                Some(value) => batch.put_cf(cf, key, value),
                None => batch.delete_cf(cf, key),
            }
        }
        self.put_positions(&mut batch, positions)?;
        self.db.write(batch).map_err(|source| self.db_error(source))
    }

    /// Drops every uncommitted write (the frozen ones too) and reloads clock and timers from
    /// the database (after an aborted transaction).
    pub fn discard(&mut self) -> Result<(), StateError> {
        self.overlay.clear();
        self.frozen.clear();
        self.journal.clear();
        self.load_runtime()
    }

    /// Where the changelog of store `index` must be replayed from (`None`: from the start).
    pub fn changelog_position(&self, index: usize) -> Result<Option<i64>, StateError> {
        let cf = self.cf(META_CF)?;
        let key = format!("{POSITION_PREFIX}{}", self.stores[index]);
        let value = self
            .db
            .get_cf(cf, key)
            .map_err(|source| self.db_error(source))?;
        Ok(value
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(i64::from_be_bytes))
    }

    /// Applies replayed changelog records directly (restore), with the position reached.
    pub fn restore_batch(
        &mut self,
        index: usize,
        records: &[(Vec<u8>, Option<Vec<u8>>)],
        next_position: i64,
    ) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        let cf = self.cf(&self.stores[index])?;
        for (key, value) in records {
            match value {
                Some(value) => batch.put_cf(cf, key, value),
                None => batch.delete_cf(cf, key),
            }
        }
        self.put_positions(&mut batch, &[(index, next_position)])?;
        self.db
            .write(batch)
            .map_err(|source| self.db_error(source))?;
        if index == self.runtime_index() {
            self.load_runtime()?;
        }
        Ok(())
    }

    /// The stateless epoch that started this (empty) state, kept with it in checkpoints too.
    pub fn epoch_mark(&self) -> Option<&EpochMark> {
        self.epoch_mark.as_ref()
    }

    /// Starts a stateless epoch on this empty state: records the mark, and sets the changelog
    /// positions to where the epoch's changelog begins, so replays skip what came before.
    pub fn start_epoch(&mut self, mark: EpochMark) -> Result<(), StateError> {
        let positions: Vec<(usize, i64)> =
            mark.changelog_start.iter().copied().enumerate().collect();
        let mut batch = WriteBatch::default();
        self.put_positions(&mut batch, &positions)?;
        batch.put_cf(self.cf(META_CF)?, EPOCH_KEY, mark.encode());
        self.db
            .write(batch)
            .map_err(|source| self.db_error(source))?;
        self.epoch_mark = Some(mark);
        Ok(())
    }

    /// Makes a consistent RocksDB checkpoint (hard links) in `dir`, which must not exist.
    ///
    /// The live WAL is hard-linked too and would keep growing under the checkpoint's name, so
    /// it is replaced by a private copy of its current content (this thread is the only
    /// writer, so nothing was appended since), or dropped when empty.
    pub fn checkpoint(&self, dir: &Path) -> Result<(), StateError> {
        let checkpoint = Checkpoint::new(&self.db).map_err(|source| self.db_error(source))?;
        checkpoint
            .create_checkpoint(dir)
            .map_err(|source| self.db_error(source))?;
        detach_wal_files(dir).map_err(|source| StateError::Io {
            partition: self.partition,
            path: dir.to_owned(),
            source,
        })
    }

    /// Live SST bytes, for the state-size metric.
    pub fn size_bytes(&self) -> u64 {
        self.stores
            .iter()
            .filter_map(|store| self.db.cf_handle(store))
            .filter_map(|cf| {
                self.db
                    .property_int_value_cf(cf, "rocksdb.total-sst-files-size")
                    .ok()
                    .flatten()
            })
            .sum()
    }

    pub fn runtime_index(&self) -> usize {
        self.stores.len() - 1
    }

    fn put_positions(
        &self,
        batch: &mut WriteBatch,
        positions: &[(usize, i64)],
    ) -> Result<(), StateError> {
        let meta = self.cf(META_CF)?;
        for (index, position) in positions {
            let key = format!("{POSITION_PREFIX}{}", self.stores[*index]);
            batch.put_cf(meta, key, position.to_be_bytes());
        }
        Ok(())
    }

    fn load_runtime(&mut self) -> Result<(), StateError> {
        let mut timers = BTreeSet::new();
        let mut clock = PartitionClock::default();
        let cf = self.cf(RUNTIME_STORE)?;
        for item in self.db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (key, value) = item.map_err(|source| self.db_error(source))?;
            if &*key == CLOCK_KEY {
                clock = serde_json::from_slice(&value).map_err(|source| StateError::Decode {
                    partition: self.partition,
                    store: RUNTIME_STORE.into(),
                    key: "clock".into(),
                    source,
                })?;
            } else if let Some(timer) = parse_timer_key(&key) {
                timers.insert(timer);
            }
        }
        self.timers = timers;
        self.clock = clock;
        Ok(())
    }

    fn store_index(&self, store: &str) -> Result<usize, StateError> {
        self.stores
            .iter()
            .position(|s| s == store)
            .ok_or_else(|| StateError::UnknownStore {
                partition: self.partition,
                store: store.to_owned(),
            })
    }

    fn read(&self, index: usize, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let slot = (index, key.to_vec());
        if let Some(value) = self.overlay.get(&slot).or_else(|| self.frozen.get(&slot)) {
            return Ok(value.clone());
        }
        let cf = self.cf(&self.stores[index])?;
        self.db
            .get_cf(cf, key)
            .map_err(|source| self.db_error(source))
    }

    fn write(&mut self, index: usize, key: Vec<u8>, value: Option<Vec<u8>>) {
        let slot = (index, key);
        let previous = self.overlay.insert(slot.clone(), value);
        self.journal.push(Undo::Write { slot, previous });
    }

    fn encode<V: Serialize>(&self, store: &str, value: &V) -> Result<Vec<u8>, StateError> {
        serde_json::to_vec(value).map_err(|source| StateError::Encode {
            partition: self.partition,
            store: store.to_owned(),
            source,
        })
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StateError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StateError::UnknownStore {
                partition: self.partition,
                store: name.to_owned(),
            })
    }

    fn db_error(&self, source: rocksdb::Error) -> StateError {
        StateError::Db {
            partition: self.partition,
            path: self.path.clone(),
            source,
        }
    }
}

fn detach_wal_files(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        let content = std::fs::read(&path)?;
        std::fs::remove_file(&path)?;
        if !content.is_empty() {
            std::fs::write(&path, content)?;
        }
    }
    Ok(())
}

fn timer_key(timer: &Timer) -> Vec<u8> {
    format!("{TIMER_PREFIX}{}/{}", timer.time, timer.key).into_bytes()
}

fn parse_timer_key(key: &[u8]) -> Option<Timer> {
    let text = std::str::from_utf8(key).ok()?.strip_prefix(TIMER_PREFIX)?;
    let (time, key) = text.split_once('/')?;
    Some(Timer {
        time: time.parse().ok()?,
        key: key.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> PartitionState {
        PartitionState::open(dir, 3, &["counts"]).expect("open")
    }

    #[test]
    fn writes_are_visible_at_once_but_durable_only_when_applied() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut state = open(dir.path());
            state.put("counts", "u1", &5u64).expect("put");
            assert_eq!(state.get::<u64>("counts", "u1").expect("get"), Some(5));
            assert_eq!(state.changes().count(), 1);
        }
        let mut state = open(dir.path());
        assert_eq!(
            state.get::<u64>("counts", "u1").expect("get"),
            None,
            "not applied"
        );
        state.put("counts", "u1", &6u64).expect("put");
        state.freeze();
        state.apply(&[(0, 42)]).expect("apply");
        drop(state);
        let state = open(dir.path());
        assert_eq!(state.get::<u64>("counts", "u1").expect("get"), Some(6));
        assert_eq!(state.changelog_position(0).expect("position"), Some(42));
        assert_eq!(state.changelog_position(1).expect("position"), None);
        assert!(!state.has_changes());
    }

    #[test]
    fn frozen_writes_stay_visible_while_they_commit_and_only_they_are_applied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state = open(dir.path());
        state.put("counts", "a", &1u64).expect("put");
        state.put("counts", "b", &1u64).expect("put");
        state.freeze();
        assert!(!state.has_changes(), "the next transaction starts empty");
        // Processing goes on during the commit: it reads the committing values.
        assert_eq!(state.get::<u64>("counts", "a").expect("get"), Some(1));
        state.begin_record();
        state.put("counts", "a", &2u64).expect("put");
        state.delete("counts", "b").expect("delete");
        assert_eq!(state.get::<u64>("counts", "a").expect("get"), Some(2));
        assert_eq!(state.get::<u64>("counts", "b").expect("get"), None);
        // A failing record rolls back to the committing values, not to the database's.
        state.rollback_record();
        assert_eq!(state.get::<u64>("counts", "a").expect("get"), Some(1));
        assert_eq!(state.get::<u64>("counts", "b").expect("get"), Some(1));
        state.put("counts", "a", &3u64).expect("put");
        // The commit succeeds: only the frozen writes become durable.
        state.apply(&[(0, 7)]).expect("apply");
        assert_eq!(state.changes().count(), 1, "a=3 waits for the next commit");
        drop(state);
        let mut state = open(dir.path());
        assert_eq!(state.get::<u64>("counts", "a").expect("get"), Some(1));
        assert_eq!(state.get::<u64>("counts", "b").expect("get"), Some(1));
        // An abort while committing drops both generations.
        state.put("counts", "a", &4u64).expect("put");
        state.freeze();
        state.put("counts", "a", &5u64).expect("put");
        state.discard().expect("discard");
        assert_eq!(state.get::<u64>("counts", "a").expect("get"), Some(1));
    }

    #[test]
    fn discard_restores_clock_and_timers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state = open(dir.path());
        state.observe(100_000, 30_000).expect("observe");
        state
            .set_timer(Timer {
                time: 5,
                key: "a/b".into(),
            })
            .expect("timer");
        state.freeze();
        state.apply(&[]).expect("apply");
        state.observe(200_000, 30_000).expect("observe");
        state
            .set_timer(Timer {
                time: 9,
                key: "c".into(),
            })
            .expect("timer");
        state.delete("counts", "x").expect("delete");
        state.discard().expect("discard");
        assert_eq!(state.clock().watermark, 69_999);
        assert_eq!(state.timer_count(), 1);
        assert_eq!(state.pop_due_timer(4), None);
        assert_eq!(
            state.pop_due_timer(5),
            Some(Timer {
                time: 5,
                key: "a/b".into()
            })
        );
    }

    #[test]
    fn restore_batches_rebuild_the_runtime_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut source = open(&dir.path().join("a"));
        source.observe(50_000, 0).expect("observe");
        source
            .set_timer(Timer {
                time: -7,
                key: "k".into(),
            })
            .expect("timer");
        let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = source
            .changes()
            .map(|(_, k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
            .collect();
        let mut target = open(&dir.path().join("b"));
        let runtime = target.runtime_index();
        target
            .restore_batch(runtime, &records, 17)
            .expect("restore");
        assert_eq!(target.clock(), source.clock());
        assert_eq!(target.pop_due_timer(-7).map(|t| t.key), Some("k".into()));
        assert_eq!(target.changelog_position(runtime).expect("pos"), Some(17));
    }

    #[test]
    fn a_failed_record_leaves_no_trace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state = open(dir.path());
        state.put("counts", "kept", &1u64).expect("put");
        state.begin_record();
        state.put("counts", "kept", &2u64).expect("put");
        state.put("counts", "new", &3u64).expect("put");
        state.observe(90_000, 0).expect("observe");
        state
            .set_timer(Timer {
                time: 1,
                key: "t".into(),
            })
            .expect("timer");
        let written: Vec<(usize, &[u8])> = state.record_writes().map(|(s, k, _)| (s, k)).collect();
        assert!(
            written.contains(&(0, b"new".as_slice())) && !written.is_empty(),
            "{written:?}"
        );
        state.rollback_record();
        assert_eq!(state.record_writes().count(), 0);
        assert_eq!(state.get::<u64>("counts", "kept").expect("get"), Some(1));
        assert_eq!(state.get::<u64>("counts", "new").expect("get"), None);
        assert_eq!(state.timer_count(), 0);
        assert_eq!(state.clock(), PartitionClock::default());
        assert_eq!(state.changes().count(), 1);
    }

    #[test]
    fn unknown_store_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = open(dir.path());
        let err = state.get::<u64>("nope", "k").expect_err("unknown");
        assert!(
            err.to_string().contains("unknown state store \"nope\""),
            "{err}"
        );
    }
}
