//! Processor binaries run as replicas by tests: the runtime's environment variables, one state
//! directory and one ops port per replica, started and waited on until ready.

use crate::kafka::{Incoming, read_until_quiet};
use crate::process::{Running, free_port, workspace_binary};
use crate::{TestEnv, unique_name};
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

impl Replica {
    /// The sum of the replica's `/metrics` samples whose line starts with `series` (a name,
    /// optionally with labels: `trendstream_transactions_total{outcome="aborted"}`); 0 when
    /// unreachable.
    pub async fn metric(&self, series: &str) -> f64 {
        let Ok(response) = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.port)).await
        else {
            return 0.0;
        };
        let body = response.text().await.unwrap_or_default();
        body.lines()
            .filter(|line| line.starts_with(series))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(0.0, |sum, value| sum + value)
    }

    /// `GET` a health endpoint (`/health/ready`, `/health/live`): status code and JSON body.
    pub async fn health(&self, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        let response = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .timeout(Duration::from_secs(5))
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await?))
    }
}

/// A processor job: its topics (dead letters `<name>-dlq`, late records `<name>-late`) and the
/// deployment every replica shares.
pub struct Job {
    pub name: String,
    pub bootstrap: String,
    pub input: String,
    pub output: String,
    pub dlq: String,
    pub late: String,
    deployment: Deployment,
}

impl Job {
    /// `binary` reading `input` into `output` on the environment's broker.
    pub fn new(
        env: &TestEnv,
        binary: &str,
        name: String,
        input: String,
        output: String,
    ) -> anyhow::Result<Self> {
        let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
        let (dlq, late) = (format!("{name}-dlq"), format!("{name}-late"));
        let deployment = Deployment::new(binary, &name)?
            .with("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
            .with("KAFKA_INPUT_TOPICS", &input)
            .with("KAFKA_OUTPUT_TOPIC", &output)
            .with("KAFKA_DLQ_TOPIC", &dlq)
            .with("KAFKA_LATE_TOPIC", &late);
        Ok(Self {
            name,
            bootstrap,
            input,
            output,
            dlq,
            late,
            deployment,
        })
    }

    /// Sets an environment variable for every replica (later settings win).
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.deployment = self.deployment.with(key, value);
        self
    }

    /// Where replica `instance` keeps its state.
    pub fn state_dir(&self, instance: &str) -> PathBuf {
        self.deployment.state_dir(instance)
    }

    /// Starts replica `instance` and waits until it is ready.
    pub async fn start(&self, instance: &str) -> anyhow::Result<Replica> {
        self.deployment.start(instance).await
    }

    /// Starts replica `instance` with `overrides` on top of the job's settings.
    pub async fn start_with(
        &self,
        instance: &str,
        overrides: &[(&str, &str)],
    ) -> anyhow::Result<Replica> {
        let mut deployment = self.deployment.clone();
        for (key, value) in overrides {
            deployment = deployment.with(key, *value);
        }
        deployment.start(instance).await
    }

    /// `topic` as a read_committed consumer sees it, once quiet (see [`read_until_quiet`]).
    pub fn read(
        &self,
        topic: &str,
        expected: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Incoming>> {
        read_until_quiet(&self.bootstrap, topic, expected, timeout)
    }
}
