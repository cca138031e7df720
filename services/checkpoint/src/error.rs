use std::path::PathBuf;

/// Everything that can go wrong, each with the bucket/object or path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("gs://{bucket}/{object} does not exist ({operation})")]
    NotFound {
        operation: &'static str,
        bucket: String,
        object: String,
    },
    #[error("GCS {operation} of gs://{bucket}/{object} failed: HTTP {status}: {body}")]
    Http {
        operation: &'static str,
        bucket: String,
        object: String,
        status: u16,
        /// The start of the response body (GCS puts its error message there).
        body: String,
    },
    #[error("GCS {operation} of gs://{bucket}/{object} failed: {source}")]
    Transport {
        operation: &'static str,
        bucket: String,
        object: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GCS {operation} of gs://{bucket}/{object} returned an unexpected response: {message}")]
    InvalidResponse {
        operation: &'static str,
        bucket: String,
        object: String,
        message: String,
    },
    #[error("cannot get a GCS access token for gs://{bucket}: {source}")]
    Auth {
        bucket: String,
        #[source]
        source: gcp_auth::Error,
    },
    #[error("cannot build the HTTP client for gs://{bucket}: {source}")]
    Client {
        bucket: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint directory {dir}: {name:?} {reason}")]
    UnsupportedEntry {
        dir: PathBuf,
        name: String,
        reason: &'static str,
    },
    #[error("checkpoint file {name} (gs://{bucket}/{object}) is corrupt: {mismatch}")]
    Corrupt {
        name: String,
        bucket: String,
        object: String,
        mismatch: Box<Mismatch>,
    },
    #[error(
        "{path} changed while it was uploaded to gs://{bucket}/{object} (sha256 {before} before, {after} during the upload)"
    )]
    ChangedDuringUpload {
        path: PathBuf,
        bucket: String,
        object: String,
        before: String,
        after: String,
    },
    #[error("manifest gs://{bucket}/{object} is invalid: {message}")]
    InvalidManifest {
        bucket: String,
        object: String,
        message: String,
    },
    #[error("cannot restore into {path}: it exists and is not an empty directory")]
    TargetNotEmpty { path: PathBuf },
}

impl Error {
    /// Whether the object (or bucket) was not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Whether trying again may succeed: throttling, server errors, broken connections.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Http { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            Error::Transport { source, .. } => {
                source.is_connect()
                    || source.is_timeout()
                    || source.is_request()
                    || source.is_body()
            }
            _ => false,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}

/// What a downloaded file was against what its manifest says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the manifest says {expected_size} bytes with sha256 {expected_sha256}, the object has {actual_size} bytes with sha256 {actual_sha256}"
)]
pub struct Mismatch {
    pub expected_size: u64,
    pub expected_sha256: String,
    pub actual_size: u64,
    pub actual_sha256: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
