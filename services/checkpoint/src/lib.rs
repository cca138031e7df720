//! Incremental RocksDB checkpoints in Google Cloud Storage.
//!
//! A RocksDB checkpoint is a directory of immutable `*.sst`/`*.blob` files plus a few small
//! mutable ones (`MANIFEST-*`, `CURRENT`, `OPTIONS-*`, `*.log`). [`CheckpointStore::upload`]
//! stores immutable files once per content under `{prefix}/{scope}/files/{sha256}-{name}`, the
//! others under `{prefix}/{scope}/checkpoints/{id}/{name}`, and writes
//! `{prefix}/{scope}/manifests/{id:020}.json` last, so a manifest exists only once all its files
//! do. [`CheckpointStore::latest`] and [`CheckpointStore::restore`] bring the newest one back,
//! verified by size and SHA-256; [`CheckpointStore::retain`] prunes old ones.
//!
//! ```no_run
//! # async fn example() -> Result<(), trendstream_checkpoint::Error> {
//! use trendstream_checkpoint::{CheckpointStore, GcsClient, GcsConfig};
//! let client = GcsClient::new(GcsConfig {
//!     bucket: "my-bucket".into(),
//!     prefix: "checkpoints".into(),
//!     endpoint: None, // GCS with Workload Identity
//! })?;
//! let store = CheckpointStore::new(client, "group/store/partition-7");
//! let uploaded = store
//!     .upload("/data/checkpoint-12".as_ref(), serde_json::json!({ "offset": 1234 }))
//!     .await?;
//! println!("sent {} bytes, reused {}", uploaded.uploaded_bytes, uploaded.reused_bytes);
//! if let Some(manifest) = store.latest().await? {
//!     store.restore(&manifest, "/data/restored".as_ref()).await?;
//! }
//! store.retain(3).await?;
//! # Ok(()) }
//! ```

mod digest;
mod error;
mod gcs;
pub mod layout;
mod store;

pub use digest::FileDigest;
pub use error::{Error, Mismatch, Result};
pub use gcs::{DEFAULT_ENDPOINT, GcsClient, GcsConfig, ObjectInfo, READ_WRITE_SCOPE, RetryPolicy};
pub use layout::{Manifest, ManifestFile};
pub use store::{CheckpointStore, RestoreReport, RetentionReport, UploadReport};
