//! Processor binaries run as replicas by tests: the runtime's environment variables, one state
//! directory and one ops port per replica, started and waited on until ready.

use crate::process::{Running, free_port, workspace_binary};
use crate::unique_name;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// A processor deployment: the binary and the settings all its replicas share.
#[derive(Debug, Clone)]
pub struct Deployment {
    binary: String,
    env: Vec<(String, String)>,
    dir: PathBuf,
}

/// One running replica; killed when dropped.
pub struct Replica {
    pub process: Running,
    pub port: u16,
}

impl Deployment {
    /// `binary` with its logs and state under a fresh directory named after `group`.
    pub fn new(binary: &str, group: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join("trendstream-e2e").join(group);
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            binary: binary.to_owned(),
            env: vec![
                ("KAFKA_CONSUMER_GROUP".into(), group.to_owned()),
                ("KAFKA_SESSION_TIMEOUT".into(), "6s".into()),
                ("RUST_LOG".into(), "info,librdkafka=warn".into()),
            ],
            dir,
        })
    }

    /// Sets an environment variable for every replica (later settings win).
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// Where replica `instance` keeps its state.
    pub fn state_dir(&self, instance: &str) -> PathBuf {
        self.dir.join(instance).join("state")
    }

    /// Starts replica `instance` (its pod name) and waits until it is ready.
    pub async fn start(&self, instance: &str) -> anyhow::Result<Replica> {
        let port = free_port()?;
        let mut command = Command::new(workspace_binary(&self.binary)?);
        command
            .env("POD_NAME", instance)
            .env("STATE_DIR", self.state_dir(instance))
            .env("TRENDSTREAM_HTTP_ADDR", format!("127.0.0.1:{port}"));
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let log = self
            .dir
            .join(format!("{instance}-{}.log", unique_name("run")));
        let mut process = Running::start(command, log)?;
        process.wait_ready(port, Duration::from_secs(120)).await?;
        Ok(Replica { process, port })
    }
}
