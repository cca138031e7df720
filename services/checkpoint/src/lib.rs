//! Incremental RocksDB checkpoints in Google Cloud Storage.
