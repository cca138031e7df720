//! SHA-256 and size of file contents, computed while the bytes go by.

use std::io::Read;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::layout::to_hex;

/// Size and SHA-256 of some content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// Accumulates a [`FileDigest`] chunk by chunk.
#[derive(Default)]
pub(crate) struct Hasher {
    sha256: Sha256,
    size: u64,
}

impl Hasher {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        self.size += bytes.len() as u64;
    }

    pub(crate) fn finish(self) -> FileDigest {
        FileDigest {
            size: self.size,
            sha256: to_hex(&self.sha256.finalize()),
        }
    }
}

/// Hashes a file on the blocking pool (hashing 64 MiB takes long enough to stall a reactor).
pub(crate) async fn hash_file(path: &Path) -> Result<FileDigest> {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&owned).map_err(Error::io("open", &owned))?;
        let mut hasher = Hasher::default();
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let read = file.read(&mut buffer).map_err(Error::io("read", &owned))?;
            if read == 0 {
                return Ok(hasher.finish());
            }
            hasher.update(&buffer[..read]);
        }
    })
    .await
    .map_err(|join| Error::Io {
        action: "hash",
        path: path.to_owned(),
        source: std::io::Error::other(join),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_known_content() {
        let mut hasher = Hasher::default();
        hasher.update(b"ab");
        hasher.update(b"c");
        assert_eq!(
            hasher.finish(),
            FileDigest {
                size: 3,
                sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
                    .to_owned(),
            }
        );
    }

    #[tokio::test]
    async fn a_file_hashes_like_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000001.sst");
        let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let mut hasher = Hasher::default();
        hasher.update(&content);
        assert_eq!(hash_file(&path).await.unwrap(), hasher.finish());
    }
}
