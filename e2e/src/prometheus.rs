//! Prometheus helpers: scrape targets through the file_sd directory, and instant queries.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A scrape target registered in `$PROMETHEUS_TARGETS_DIR`; removed when dropped.
pub struct Target {
    file: PathBuf,
}

impl Target {
    /// Registers `address` (host:port) with `labels`; written atomically so Prometheus never
    /// reads half a file.
    pub fn register(
        targets_dir: &str,
        name: &str,
        address: &str,
        labels: serde_json::Value,
    ) -> anyhow::Result<Self> {
        let dir = PathBuf::from(targets_dir);
        let file = dir.join(format!("{name}.json"));
        let partial = dir.join(format!(".{name}.tmp"));
        let targets = serde_json::json!([{ "targets": [address], "labels": labels }]);
        std::fs::write(&partial, serde_json::to_vec(&targets)?)?;
        std::fs::rename(&partial, &file)?;
        Ok(Self { file })
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Polls the instant query `query` until its first sample's value satisfies `done` or
/// `timeout` passes; returns the last value seen and the last raw answer.
pub async fn query_until(
    prometheus: &str,
    query: &str,
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> anyhow::Result<(Option<String>, serde_json::Value)> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        let answer: serde_json::Value = http
            .get(format!("{prometheus}/api/v1/query"))
            .query(&[("query", query)])
            .send()
            .await?
            .json()
            .await?;
        let value = answer["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_owned);
        if value.as_deref().is_some_and(&done) || Instant::now() > deadline {
            return Ok((value, answer));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
