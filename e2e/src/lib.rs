//! Shared helpers for the end-to-end tests.
//!
//! `e2e/env/up` starts every external component on 127.0.0.1 and writes their addresses into
//! an env file (`KEY=VALUE` lines). Tests read it through [`TestEnv`], so they never guess a
//! port and always talk to the component `up` started.

pub mod counter;
pub mod feature_api;
pub mod fleet;
pub mod gcs;
pub mod kafka;
pub mod kube;
pub mod oracle;
pub mod pipeline;
pub mod process;
pub mod processor;
pub mod prometheus;
pub mod redis;
pub mod session_job;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the env file is looked for when `TRENDSTREAM_ENV_FILE` is not set.
pub fn default_env_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.e2e-env/env")
}

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error(
        "cannot read the test environment file {path}: {source}; start the environment with `e2e/env/up` (or run `make test`)"
    )]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: expected KEY=VALUE, found {text:?}")]
    Malformed {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error(
        "{key} is not in {path}: the component that sets it was not started (`e2e/env/up` starts all of them)"
    )]
    Missing { key: String, path: PathBuf },
}

/// The addresses of the running test components.
#[derive(Debug, Clone)]
pub struct TestEnv {
    path: PathBuf,
    values: BTreeMap<String, String>,
}

impl TestEnv {
    /// Loads the env file named by `TRENDSTREAM_ENV_FILE`, else the default one.
    pub fn load() -> Result<Self, EnvError> {
        let path = std::env::var_os("TRENDSTREAM_ENV_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(default_env_file);
        Self::from_file(&path)
    }

    pub fn from_file(path: &Path) -> Result<Self, EnvError> {
        let text = std::fs::read_to_string(path).map_err(|source| EnvError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<Self, EnvError> {
        let mut values = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(EnvError::Malformed {
                    path: path.to_owned(),
                    line: index + 1,
                    text: line.to_owned(),
                });
            };
            values.insert(key.trim().to_owned(), value.trim().to_owned());
        }
        Ok(Self {
            path: path.to_owned(),
            values,
        })
    }

    /// The value of `key`, or an error naming the key and the file.
    pub fn get(&self, key: &str) -> Result<&str, EnvError> {
        self.values
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| EnvError::Missing {
                key: key.to_owned(),
                path: self.path.clone(),
            })
    }
}

/// A name unique to this test run, for topics, buckets, keys and namespaces, so that tests can
/// share one environment (and run again against it) without seeing each other's data.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_comments_and_blank_lines() {
        let env = TestEnv::parse(
            Path::new("env"),
            "# started by up\nKAFKA_BOOTSTRAP=127.0.0.1:4000\n\nREDIS_URL = redis://127.0.0.1:5000\n",
        )
        .unwrap();
        assert_eq!(env.get("KAFKA_BOOTSTRAP").unwrap(), "127.0.0.1:4000");
        assert_eq!(env.get("REDIS_URL").unwrap(), "redis://127.0.0.1:5000");
    }

    #[test]
    fn missing_key_names_the_key_and_the_file() {
        let env = TestEnv::parse(Path::new("/x/env"), "A=1\n").unwrap();
        let message = env.get("PG_URL").unwrap_err().to_string();
        assert!(
            message.contains("PG_URL") && message.contains("/x/env"),
            "{message}"
        );
    }

    #[test]
    fn a_line_without_equals_is_rejected_with_its_number() {
        let message = TestEnv::parse(Path::new("env"), "A=1\noops\n")
            .unwrap_err()
            .to_string();
        assert!(message.contains("env:2"), "{message}");
    }

    #[test]
    fn an_absent_file_says_how_to_start_the_environment() {
        let message = TestEnv::from_file(Path::new("/nonexistent/env"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("e2e/env/up"), "{message}");
    }
}
