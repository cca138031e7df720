//! Checkpoints: RocksDB checkpoints on the PVC, uploaded incrementally to GCS, and the restore
//! path of a partition that arrives without local state.
//!
//! A checkpoint is taken right after a commit, so it holds exactly committed state together with
//! the changelog positions it reached; restoring it and replaying the changelogs from there gives
//! the current state. Uploads run on the tokio runtime, off the processing thread; a partition
//! whose previous upload is still running skips a round.

use crate::changelog;
use crate::engine::{EngineError, now_ms};
use crate::metrics::{OutcomeLabels, RuntimeMetrics};
use crate::state::{PartitionState, StateError};
use crate::upgrade::{EpochMark, PartitionStart, keeps_state};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use trendstream_checkpoint::{CheckpointStore, GcsClient, GcsConfig};
use trendstream_service::kafka::KafkaCluster;

pub struct Checkpointer {
    state_dir: PathBuf,
    kafka: KafkaCluster,
    group: String,
    interval: Duration,
    retained: usize,
    last: Instant,
    gcs: Option<GcsClient>,
    /// One store per partition, kept so its cache of SST digests survives between checkpoints.
    stores: Mutex<HashMap<i32, Arc<CheckpointStore>>>,
    runtime: Handle,
    uploading: Arc<Mutex<HashSet<i32>>>,
    /// The running upload (and retention) of each partition, to stop it when the partition goes.
    upload_tasks: Mutex<HashMap<i32, tokio::task::AbortHandle>>,
    metrics: Arc<RuntimeMetrics>,
}

/// Settings of a [`Checkpointer`].
pub struct CheckpointSettings {
    pub state_dir: PathBuf,
    pub kafka: KafkaCluster,
    pub group: String,
    pub interval: Duration,
    pub retained: usize,
    pub gcs: Option<GcsConfig>,
}

impl Checkpointer {
    pub fn new(
        settings: CheckpointSettings,
        runtime: Handle,
        metrics: Arc<RuntimeMetrics>,
    ) -> Result<Self, Box<trendstream_checkpoint::Error>> {
        let gcs = settings
            .gcs
            .map(GcsClient::new)
            .transpose()
            .map_err(Box::new)?;
        metrics
            .checkpoint_interval_seconds
            .set(settings.interval.as_secs_f64());
        Ok(Self {
            state_dir: settings.state_dir,
            kafka: settings.kafka,
            group: settings.group,
            interval: settings.interval,
            retained: settings.retained,
            last: Instant::now(),
            gcs,
            stores: Mutex::default(),
            runtime,
            uploading: Arc::default(),
            upload_tasks: Mutex::default(),
            metrics,
        })
    }

    fn partition_dir(&self, partition: i32) -> PathBuf {
        self.state_dir
            .join("partitions")
            .join(partition.to_string())
    }

    fn checkpoint_root(&self, partition: i32) -> PathBuf {
        self.state_dir
            .join("checkpoints")
            .join(partition.to_string())
    }

    fn store(&self, partition: i32) -> Option<Arc<CheckpointStore>> {
        let client = self.gcs.clone()?;
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        let store = stores.entry(partition).or_insert_with(|| {
            Arc::new(CheckpointStore::new(
                client,
                format!("{}/partition-{partition}", self.group),
            ))
        });
        Some(store.clone())
    }

    pub fn due(&self) -> bool {
        self.last.elapsed() >= self.interval
    }

    /// Opens a partition's state as `start` says (see [`crate::upgrade`]), then replays the
    /// changelogs. Resuming: the local database if there is one, else the newest GCS
    /// checkpoint, else empty. Returns the records replayed.
    pub fn open_partition(
        &self,
        partition: i32,
        stores: &[&str],
        changelogs: &[String],
        start: &PartitionStart,
    ) -> Result<(PartitionState, u64), EngineError> {
        let dir = self.partition_dir(partition);
        let mut state = match start {
            PartitionStart::Resume => {
                if !dir.join("CURRENT").exists() {
                    self.restore_from_gcs(partition, &dir);
                }
                PartitionState::open(&dir, partition, stores)?
            }
            PartitionStart::ResumeEpoch(mark) => {
                self.open_epoch(partition, &dir, stores, start, mark)?
            }
            PartitionStart::Fresh(epoch) => {
                let changelog_start = changelog::end_offsets(&self.kafka, changelogs, partition)?;
                let mark = EpochMark {
                    epoch: epoch.clone(),
                    changelog_start,
                };
                open_empty(partition, &dir, stores, mark)?
            }
        };
        let replayed = changelog::replay(&self.kafka, &mut state, changelogs)?;
        Ok((state, replayed))
    }

    /// Stateless, resuming: the local state if this epoch started it, else the newest GCS
    /// checkpoint if this epoch started that, else empty from the epoch's changelog start.
    fn open_epoch(
        &self,
        partition: i32,
        dir: &Path,
        stores: &[&str],
        start: &PartitionStart,
        mark: &EpochMark,
    ) -> Result<PartitionState, EngineError> {
        let current = || -> Result<Option<PartitionState>, EngineError> {
            if !dir.join("CURRENT").exists() {
                return Ok(None);
            }
            let state = PartitionState::open(dir, partition, stores)?;
            let epoch = state.epoch_mark().map(|m| m.epoch.as_str());
            Ok(keeps_state(start, epoch).then_some(state))
        };
        if let Some(state) = current()? {
            return Ok(state);
        }
        remove_state(partition, dir)?;
        self.restore_from_gcs(partition, dir);
        if let Some(state) = current()? {
            return Ok(state);
        }
        tracing::info!(
            partition,
            epoch = mark.epoch,
            "no state of this epoch; rebuilding it from the changelog"
        );
        Ok(open_empty(partition, dir, stores, mark.clone())?)
    }

    /// Best effort: a missing or broken checkpoint means a full changelog replay, not a failure.
    fn restore_from_gcs(&self, partition: i32, dir: &Path) {
        let Some(store) = self.store(partition) else {
            return;
        };
        let restore = async {
            let Some(manifest) = store.latest().await? else {
                return Ok(None);
            };
            if dir.exists() {
                let _ = tokio::fs::remove_dir_all(dir).await;
            }
            store.restore(&manifest, dir).await?;
            Ok::<_, trendstream_checkpoint::Error>(Some(manifest.id))
        };
        match self.runtime.block_on(restore) {
            Ok(Some(id)) => tracing::info!(partition, checkpoint = id, "state restored from GCS"),
            Ok(None) => tracing::info!(partition, "no checkpoint in GCS; replaying the changelog"),
            Err(err) => {
                tracing::warn!(partition, error = %err, "restore from GCS failed; replaying the whole changelog");
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    /// Makes a local checkpoint of every partition and uploads each in the background.
    pub fn checkpoint_all<'a>(&mut self, states: impl Iterator<Item = &'a PartitionState>) {
        self.last = Instant::now();
        for state in states {
            let partition = state.partition();
            if !self
                .uploading
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(partition)
            {
                continue;
            }
            let started = Instant::now();
            let root = self.checkpoint_root(partition);
            let stamp = now_ms();
            let dir = root.join(format!("{stamp:020}"));
            let made = std::fs::create_dir_all(&root)
                .map_err(|err| err.to_string())
                .and_then(|()| state.checkpoint(&dir).map_err(|err| err.to_string()));
            if let Err(err) = made {
                tracing::warn!(partition, error = %err, "local checkpoint failed");
                self.finish(partition, "failed");
                continue;
            }
            prune_local(&root, self.retained);
            let Some(store) = self.store(partition) else {
                self.metrics
                    .checkpoint_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.checkpoint_completed();
                self.finish(partition, "local");
                continue;
            };
            let metadata = serde_json::json!({ "partition": partition, "group": self.group });
            let uploading = self.uploading.clone();
            let metrics = self.metrics.clone();
            let retained = self.retained;
            let task = self.runtime.spawn(async move {
                let outcome = match store.upload(&dir, metadata).await {
                    Ok(report) => {
                        metrics
                            .checkpoint_uploaded_bytes
                            .inc_by(report.uploaded_bytes);
                        metrics.checkpoint_reused_bytes.inc_by(report.reused_bytes);
                        if let Err(err) = store.retain(retained).await {
                            tracing::warn!(partition, error = %err, "checkpoint retention failed");
                        }
                        tracing::debug!(partition, id = report.manifest.id, "checkpoint uploaded");
                        metrics.checkpoint_completed();
                        "uploaded"
                    }
                    Err(err) => {
                        tracing::warn!(partition, error = %err, "checkpoint upload failed");
                        "failed"
                    }
                };
                metrics
                    .checkpoint_seconds
                    .observe(started.elapsed().as_secs_f64());
                metrics
                    .checkpoints
                    .get_or_create(&OutcomeLabels { outcome })
                    .inc();
                uploading
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&partition);
            });
            self.upload_tasks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(partition, task.abort_handle());
        }
    }

    /// Before a partition goes to another replica: lets its running upload and retention finish
    /// (at most `limit`, then stops them). The new owner uploads into the same GCS scope, and
    /// this replica's retention would otherwise delete files the new owner has uploaded but not
    /// yet named in a manifest. The rebalance completes only after this returns, so the two
    /// never overlap.
    pub fn settle(&self, partition: i32, limit: Duration) {
        let deadline = Instant::now() + limit;
        let running = || {
            self.uploading
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&partition)
        };
        while running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let task = self
            .upload_tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&partition);
        if running() {
            tracing::warn!(
                partition,
                ?limit,
                "checkpoint upload still running as the partition leaves; stopped (the new owner uploads its own)"
            );
            if let Some(task) = task {
                task.abort();
            }
            self.finish(partition, "abandoned");
        }
    }

    fn finish(&self, partition: i32, outcome: &'static str) {
        self.metrics
            .checkpoints
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.uploading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&partition);
    }

    /// Waits (bounded) for running uploads, at shutdown.
    pub fn wait_for_uploads(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline
            && !self
                .uploading
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Keeps the newest `keep` local checkpoint directories of a partition.
fn prune_local(root: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dirs.sort();
    let excess = dirs.len().saturating_sub(keep);
    for dir in dirs.into_iter().take(excess) {
        if let Err(err) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %err, "removing an old local checkpoint");
        }
    }
}

/// Deletes a partition's local database (state of another epoch).
fn remove_state(partition: i32, dir: &Path) -> Result<(), StateError> {
    match std::fs::remove_dir_all(dir) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(StateError::Io {
            partition,
            path: dir.to_owned(),
            source: err,
        }),
        _ => Ok(()),
    }
}

/// An empty state that starts the epoch of `mark` (a stateless fresh start or rebuild).
fn open_empty(
    partition: i32,
    dir: &Path,
    stores: &[&str],
    mark: EpochMark,
) -> Result<PartitionState, StateError> {
    remove_state(partition, dir)?;
    let mut state = PartitionState::open(dir, partition, stores)?;
    state.start_epoch(mark)?;
    Ok(state)
}
