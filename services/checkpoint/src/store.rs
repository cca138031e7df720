//! Uploading, finding, restoring and pruning the checkpoints of one scope.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use tokio::sync::Mutex;

use crate::digest::hash_file;
use crate::error::{Error, Mismatch, Result};
use crate::gcs::GcsClient;
use crate::layout::{
    Fetched, Layout, Manifest, ManifestFile, is_immutable, manifest_ids_newest_first,
    next_manifest_id, parse_manifest, plan_retention,
};

/// How many objects are transferred at once.
const DEFAULT_CONCURRENCY: usize = 4;

/// What [`CheckpointStore::upload`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadReport {
    /// The manifest as written.
    pub manifest: Manifest,
    /// Files sent to GCS by this upload.
    pub uploaded_files: usize,
    pub uploaded_bytes: u64,
    /// Immutable files already in GCS, referenced without sending them again.
    pub reused_files: usize,
    pub reused_bytes: u64,
}

/// What [`CheckpointStore::restore`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreReport {
    pub files: usize,
    pub bytes: u64,
}

/// What [`CheckpointStore::retain`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionReport {
    /// Manifests still there, newest first.
    pub kept: Vec<u64>,
    /// Manifests deleted, newest first.
    pub deleted_manifests: Vec<u64>,
    pub deleted_files: usize,
    pub deleted_bytes: u64,
    /// Kept manifests that did not parse; while there are any, no file is deleted.
    pub unreadable: Vec<u64>,
}

/// The checkpoints of one scope (e.g. `"<group>/<store>/partition-7"`), stored under
/// `{prefix}/{scope}/`.
///
/// One writer per scope: the runtime processes a partition on one replica at a time, and
/// within this process [`upload`](Self::upload) and [`retain`](Self::retain) exclude each other.
#[derive(Debug)]
pub struct CheckpointStore {
    client: GcsClient,
    layout: Layout,
    concurrency: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Digests of immutable files already hashed, so an unchanged file is not read again.
    digests: HashMap<CacheKey, String>,
    /// The newest manifest this store wrote or read: its objects are known to exist.
    previous: Option<Manifest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    name: String,
    size: u64,
    modified: SystemTime,
}

/// A regular file of the checkpoint directory.
#[derive(Debug, Clone)]
struct LocalFile {
    name: String,
    path: PathBuf,
    size: u64,
    modified: SystemTime,
}

impl LocalFile {
    fn key(&self) -> CacheKey {
        CacheKey {
            name: self.name.clone(),
            size: self.size,
            modified: self.modified,
        }
    }
}

/// One file's outcome in an upload.
struct Transferred {
    file: ManifestFile,
    uploaded: bool,
}

impl CheckpointStore {
    pub fn new(client: GcsClient, scope: impl Into<String>) -> Self {
        let layout = Layout::new(client.prefix(), &scope.into());
        Self {
            client,
            layout,
            concurrency: DEFAULT_CONCURRENCY,
            state: Mutex::new(State::default()),
        }
    }

    /// How many objects are uploaded, downloaded or deleted at once (default 4).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Every object of this scope starts with this.
    pub fn root(&self) -> String {
        self.layout.root()
    }

    pub fn client(&self) -> &GcsClient {
        &self.client
    }

    /// Uploads the checkpoint directory `dir` (regular files only) and writes its manifest, last.
    ///
    /// `.sst` and `.blob` files are stored once per content and reused by later checkpoints;
    /// the other files are stored under this checkpoint's id.
    pub async fn upload(&self, dir: &Path, metadata: serde_json::Value) -> Result<UploadReport> {
        let mut state = self.state.lock().await;
        let files = read_checkpoint_dir(dir).await?;

        let ids = self.manifest_ids().await?;
        let id = next_manifest_id(ids.iter().copied());
        // Objects of the newest manifest exist (retention keeps them); trust nothing older.
        if state.previous.as_ref().map(|m| m.id) != ids.first().copied() {
            state.previous = self.newest_readable(&ids).await?;
        }

        self.hash_immutable(&files, &mut state.digests).await?;
        let known: HashSet<&str> = state
            .previous
            .iter()
            .flat_map(|m| m.files.iter().map(|f| f.object.as_str()))
            .collect();
        let digests = &state.digests;
        // Futures are collected first: a stream of closures over borrowed items trips the
        // compiler's Send inference (higher-ranked lifetimes) when the caller spawns this.
        let transfers: Vec<_> = files
            .iter()
            .map(|file| {
                let digest = digests.get(&file.key()).map(String::as_str);
                self.transfer(id, file, digest, &known)
            })
            .collect();
        let mut transferred: Vec<Transferred> = stream::iter(transfers)
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await?;
        transferred.sort_by(|a, b| a.file.name.cmp(&b.file.name));

        let mut report = UploadReport {
            manifest: Manifest {
                id,
                created_at_ms: now_ms(),
                files: Vec::with_capacity(transferred.len()),
                metadata,
            },
            uploaded_files: 0,
            uploaded_bytes: 0,
            reused_files: 0,
            reused_bytes: 0,
        };
        for Transferred { file, uploaded } in transferred {
            if uploaded {
                report.uploaded_files += 1;
                report.uploaded_bytes += file.size;
            } else {
                report.reused_files += 1;
                report.reused_bytes += file.size;
            }
            report.manifest.files.push(file);
        }

        let object = self.layout.manifest_object(id);
        let body = serde_json::to_vec_pretty(&report.manifest).expect("a manifest serializes");
        self.client.create_bytes(&object, body).await?;

        let present: HashSet<&str> = files.iter().map(|f| f.name.as_str()).collect();
        state
            .digests
            .retain(|key, _| present.contains(key.name.as_str()));
        state.previous = Some(report.manifest.clone());
        tracing::info!(
            scope = %self.layout.root(),
            id,
            uploaded_files = report.uploaded_files,
            uploaded_bytes = report.uploaded_bytes,
            reused_files = report.reused_files,
            reused_bytes = report.reused_bytes,
            "checkpoint uploaded"
        );
        Ok(report)
    }

    /// The newest manifest that parses, or `None` when the scope has none.
    pub async fn latest(&self) -> Result<Option<Manifest>> {
        let ids = self.manifest_ids().await?;
        self.newest_readable(&ids).await
    }

    /// Ids of the manifests in this scope, newest first.
    pub async fn manifest_ids(&self) -> Result<Vec<u64>> {
        let objects = self.client.list(&self.layout.manifests_prefix()).await?;
        Ok(manifest_ids_newest_first(
            &self.layout,
            objects.iter().map(|o| o.name.as_str()),
        ))
    }

    /// Reads manifest `id`: `Ok(None)` when it is gone, an [`Error::InvalidManifest`] when it
    /// does not parse.
    pub async fn manifest(&self, id: u64) -> Result<Option<Manifest>> {
        let object = self.layout.manifest_object(id);
        let bytes = match self.client.download(&object).await {
            Ok(bytes) => bytes,
            Err(error) if error.is_not_found() => return Ok(None),
            Err(error) => return Err(error),
        };
        parse_manifest(&self.layout, id, &bytes)
            .map(Some)
            .map_err(|message| Error::InvalidManifest {
                bucket: self.client.bucket().to_owned(),
                object,
                message,
            })
    }

    /// Downloads every file of `manifest` into a new directory beside `into`, checks each size and
    /// SHA-256, then renames it to `into`. `into` must not exist or be an empty directory.
    pub async fn restore(&self, manifest: &Manifest, into: &Path) -> Result<RestoreReport> {
        // Re-check what parse_manifest checks: the caller may have built or changed `manifest`.
        let encoded = serde_json::to_vec(manifest).expect("a manifest serializes");
        parse_manifest(&self.layout, manifest.id, &encoded).map_err(|message| {
            Error::InvalidManifest {
                bucket: self.client.bucket().to_owned(),
                object: self.layout.manifest_object(manifest.id),
                message,
            }
        })?;
        let target_exists = check_restore_target(into).await?;
        let staging = staging_dir(into, manifest.id);
        tokio::fs::create_dir_all(&staging)
            .await
            .map_err(Error::io("create", &staging))?;

        let result = self.download_all(manifest, &staging).await;
        let result = match result {
            Ok(report) => finish_restore(&staging, into, target_exists)
                .await
                .map(|()| report),
            Err(error) => Err(error),
        };
        if result.is_err() {
            let _ = tokio::fs::remove_dir_all(&staging).await;
        }
        result
    }

    /// Keeps the newest `keep` manifests, deletes the others, then deletes every file object that
    /// no remaining manifest refers to (files of interrupted uploads too).
    pub async fn retain(&self, keep: usize) -> Result<RetentionReport> {
        let mut state = self.state.lock().await;
        let ids = self.manifest_ids().await?;
        let mut fetched = Vec::new();
        let mut readable = 0;
        let mut cut = ids.len();
        for (index, &id) in ids.iter().enumerate() {
            if readable >= keep {
                cut = index;
                break;
            }
            let manifest = match self.manifest(id).await {
                Ok(Some(manifest)) => Some(manifest),
                Ok(None) => continue,
                Err(error @ Error::InvalidManifest { .. }) => {
                    tracing::warn!(%error, "keeping an unreadable manifest");
                    None
                }
                Err(error) => return Err(error),
            };
            readable += usize::from(manifest.is_some());
            fetched.push(Fetched { id, manifest });
        }
        let older = &ids[cut..];

        let mut objects = self.client.list(&self.layout.shared_files_prefix()).await?;
        objects.extend(self.client.list(&self.layout.checkpoints_prefix()).await?);
        let sizes: HashMap<String, u64> = objects.into_iter().map(|o| (o.name, o.size)).collect();
        let names: Vec<String> = sizes.keys().cloned().collect();
        let plan = plan_retention(keep, &fetched, older, &names);

        for &id in &plan.delete_manifests {
            self.delete_if_present(&self.layout.manifest_object(id))
                .await?;
        }
        if state
            .previous
            .as_ref()
            .is_some_and(|m| plan.delete_manifests.contains(&m.id))
        {
            state.previous = None;
        }
        let deletions: Vec<_> = plan
            .delete_files
            .iter()
            .map(|object| self.delete_if_present(object))
            .collect();
        stream::iter(deletions)
            .buffer_unordered(self.concurrency)
            .try_collect::<()>()
            .await?;
        let report = RetentionReport {
            kept: plan.keep,
            deleted_manifests: plan.delete_manifests,
            deleted_files: plan.delete_files.len(),
            deleted_bytes: plan.delete_files.iter().map(|o| sizes[o]).sum(),
            unreadable: plan.unreadable,
        };
        tracing::info!(
            scope = %self.layout.root(),
            kept = ?report.kept,
            deleted_manifests = ?report.deleted_manifests,
            deleted_files = report.deleted_files,
            deleted_bytes = report.deleted_bytes,
            "checkpoint retention"
        );
        Ok(report)
    }

    async fn delete_if_present(&self, object: &str) -> Result<()> {
        match self.client.delete(object).await {
            Err(error) if error.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// The first manifest of `ids` (newest first) that parses; unreadable ones are skipped.
    async fn newest_readable(&self, ids: &[u64]) -> Result<Option<Manifest>> {
        for &id in ids {
            match self.manifest(id).await {
                Ok(Some(manifest)) => return Ok(Some(manifest)),
                Ok(None) => {}
                Err(error @ Error::InvalidManifest { .. }) => {
                    tracing::warn!(%error, "skipping an unreadable checkpoint manifest");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(None)
    }

    /// Hashes the immutable files not in `digests` (several at once) and records them.
    async fn hash_immutable(
        &self,
        files: &[LocalFile],
        digests: &mut HashMap<CacheKey, String>,
    ) -> Result<()> {
        let hashes: Vec<_> = files
            .iter()
            .filter(|f| is_immutable(&f.name) && !digests.contains_key(&f.key()))
            .map(|file| async move {
                let digest = hash_file(&file.path).await?;
                if digest.size != file.size {
                    return Err(changed(&file.path, file.size, digest.size));
                }
                Ok((file.key(), digest.sha256))
            })
            .collect();
        let hashed: Vec<(CacheKey, String)> = stream::iter(hashes)
            .buffer_unordered(self.concurrency.min(2))
            .try_collect()
            .await?;
        digests.extend(hashed);
        Ok(())
    }

    /// Uploads `file` unless it is immutable and already stored.
    async fn transfer(
        &self,
        id: u64,
        file: &LocalFile,
        sha256: Option<&str>,
        known: &HashSet<&str>,
    ) -> Result<Transferred> {
        let entry = |object: String, sha256: String| ManifestFile {
            name: file.name.clone(),
            object,
            size: file.size,
            sha256,
        };
        let Some(sha256) = sha256 else {
            // Mutable: stored under this checkpoint, hashed while it is sent.
            let object = self.layout.file_object(id, &file.name, "");
            let (_, digest) = self.client.upload_file(&object, &file.path).await?;
            return Ok(Transferred {
                file: ManifestFile {
                    size: digest.size,
                    ..entry(object, digest.sha256)
                },
                uploaded: true,
            });
        };
        let object = self.layout.file_object(id, &file.name, sha256);
        let stored = known.contains(object.as_str())
            || match self.client.metadata(&object).await {
                Ok(info) => info.size == file.size,
                Err(error) if error.is_not_found() => false,
                Err(error) => return Err(error),
            };
        if !stored {
            let (_, digest) = self.client.upload_file(&object, &file.path).await?;
            if digest.sha256 != sha256 {
                return Err(Error::ChangedDuringUpload {
                    path: file.path.clone(),
                    bucket: self.client.bucket().to_owned(),
                    object,
                    before: sha256.to_owned(),
                    after: digest.sha256,
                });
            }
        }
        Ok(Transferred {
            file: entry(object, sha256.to_owned()),
            uploaded: !stored,
        })
    }

    async fn download_all(&self, manifest: &Manifest, staging: &Path) -> Result<RestoreReport> {
        let downloads: Vec<_> = manifest
            .files
            .iter()
            .map(|file| async move {
                let path = staging.join(&file.name);
                let digest = self.client.download_to_file(&file.object, &path).await?;
                if digest.size != file.size || digest.sha256 != file.sha256 {
                    return Err(Error::Corrupt {
                        name: file.name.clone(),
                        bucket: self.client.bucket().to_owned(),
                        object: file.object.clone(),
                        mismatch: Box::new(Mismatch {
                            expected_size: file.size,
                            expected_sha256: file.sha256.clone(),
                            actual_size: digest.size,
                            actual_sha256: digest.sha256,
                        }),
                    });
                }
                Ok(file.size)
            })
            .collect();
        stream::iter(downloads)
            .buffer_unordered(self.concurrency)
            .try_fold(
                RestoreReport { files: 0, bytes: 0 },
                |mut report, size| async move {
                    report.files += 1;
                    report.bytes += size;
                    Ok(report)
                },
            )
            .await
    }
}

fn changed(path: &Path, before: u64, after: u64) -> Error {
    Error::Io {
        action: "hash",
        path: path.to_owned(),
        source: std::io::Error::other(format!(
            "the file changed size while it was read ({before} then {after} bytes); checkpoint files must not change"
        )),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The regular files of a checkpoint directory, sorted by name.
async fn read_checkpoint_dir(dir: &Path) -> Result<Vec<LocalFile>> {
    let unsupported = |name: String, reason| Error::UnsupportedEntry {
        dir: dir.to_owned(),
        name,
        reason,
    };
    let mut entries = tokio::fs::read_dir(dir)
        .await
        .map_err(Error::io("read directory", dir))?;
    let mut files = Vec::new();
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(Error::io("read directory", dir))?
    {
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|name| unsupported(name.to_string_lossy().into_owned(), "is not UTF-8"))?;
        let metadata = tokio::fs::metadata(&path)
            .await
            .map_err(Error::io("stat", &path))?;
        if !metadata.is_file() {
            return Err(unsupported(name, "is not a regular file"));
        }
        files.push(LocalFile {
            name,
            size: metadata.len(),
            modified: metadata.modified().map_err(Error::io("stat", &path))?,
            path,
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Whether `into` exists (as an empty directory); an error if it is anything else.
async fn check_restore_target(into: &Path) -> Result<bool> {
    match tokio::fs::read_dir(into).await {
        Ok(mut entries) => {
            let first = entries
                .next_entry()
                .await
                .map_err(Error::io("read directory", into))?;
            if first.is_some() {
                return Err(Error::TargetNotEmpty {
                    path: into.to_owned(),
                });
            }
            Ok(true)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) if error.kind() == std::io::ErrorKind::NotADirectory => {
            Err(Error::TargetNotEmpty {
                path: into.to_owned(),
            })
        }
        Err(source) => Err(Error::Io {
            action: "read directory",
            path: into.to_owned(),
            source,
        }),
    }
}

/// A fresh directory name beside `into`, so the final rename stays on one file system.
fn staging_dir(into: &Path, id: u64) -> PathBuf {
    let name = into
        .file_name()
        .map_or_else(|| "checkpoint".into(), |n| n.to_string_lossy().into_owned());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let unique = format!(".{name}.restore-{id}-{}-{nanos:x}", std::process::id());
    match into.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.join(unique),
        _ => PathBuf::from(unique),
    }
}

async fn finish_restore(staging: &Path, into: &Path, target_exists: bool) -> Result<()> {
    if target_exists {
        tokio::fs::remove_dir(into)
            .await
            .map_err(Error::io("replace the empty directory", into))?;
    }
    tokio::fs::rename(staging, into)
        .await
        .map_err(Error::io("rename the restored checkpoint to", into))?;
    if let Some(parent) = into.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Make the rename durable; a failure here loses nothing already restored.
        if let Ok(dir) = tokio::fs::File::open(parent).await {
            let _ = dir.sync_all().await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcs::GcsConfig;

    fn store() -> CheckpointStore {
        let client = GcsClient::new(GcsConfig {
            bucket: "b".into(),
            prefix: "ckpt".into(),
            endpoint: Some("http://127.0.0.1:9".into()),
        })
        .unwrap();
        CheckpointStore::new(client, "g/s/partition-7")
    }

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn the_futures_can_be_spawned() {
        let store = store();
        let dir = Path::new("/nonexistent");
        let manifest = Manifest {
            id: 1,
            created_at_ms: 0,
            files: vec![],
            metadata: serde_json::Value::Null,
        };
        assert_send(&store.upload(dir, serde_json::Value::Null));
        assert_send(&store.latest());
        assert_send(&store.restore(&manifest, dir));
        assert_send(&store.retain(1));
    }

    #[tokio::test]
    async fn only_regular_files_make_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("CURRENT"), "MANIFEST-000005\n").unwrap();
        std::fs::write(dir.path().join("000001.sst"), "x").unwrap();
        let files = read_checkpoint_dir(dir.path()).await.unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["000001.sst", "CURRENT"]);

        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let message = read_checkpoint_dir(dir.path())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("\"sub\" is not a regular file"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn restore_target_must_be_absent_or_empty() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("partition-7");
        assert!(!check_restore_target(&target).await.unwrap());
        std::fs::create_dir(&target).unwrap();
        assert!(check_restore_target(&target).await.unwrap());
        std::fs::write(target.join("CURRENT"), "x").unwrap();
        assert!(matches!(
            check_restore_target(&target).await,
            Err(Error::TargetNotEmpty { .. })
        ));
        assert!(matches!(
            check_restore_target(&target.join("CURRENT")).await,
            Err(Error::TargetNotEmpty { .. })
        ));
    }

    #[test]
    fn staging_is_a_hidden_sibling() {
        let staging = staging_dir(Path::new("/data/state/partition-7"), 12);
        assert_eq!(staging.parent(), Some(Path::new("/data/state")));
        let name = staging.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(".partition-7.restore-12-"), "{name}");
    }

    #[tokio::test]
    async fn restore_refuses_a_manifest_that_would_write_outside_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = Manifest {
            id: 1,
            created_at_ms: 0,
            files: vec![ManifestFile {
                name: "../evil".into(),
                object: "ckpt/g/s/partition-7/files/x".into(),
                size: 1,
                sha256: "0".repeat(64),
            }],
            metadata: serde_json::Value::Null,
        };
        let error = store()
            .restore(&manifest, &dir.path().join("p"))
            .await
            .unwrap_err();
        assert!(matches!(error, Error::InvalidManifest { .. }), "{error}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
