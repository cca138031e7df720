//! A session-aggregator job on the real broker and Redis: its topics, its replicas, and the
//! check that everything it wrote equals the oracle (`oracle::sessions`).

use crate::kafka::{Incoming, create_topic};
use crate::oracle::partition_for;
use crate::oracle::sessions::{EventLine, Expected, Settings, expected, read_event_file};
use crate::process::workspace_binary;
use crate::processor::{Job, Replica};
use crate::{TestEnv, unique_name};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub struct SessionJob {
    job: Job,
    pub redis_url: String,
    /// Where the test keeps its event file.
    pub dir: PathBuf,
}

/// The job's topics, replicas and reads.
impl std::ops::Deref for SessionJob {
    type Target = Job;

    fn deref(&self) -> &Job {
        &self.job
    }
}

impl SessionJob {
    /// A job named after `prefix` on the environment's broker and Redis.
    pub fn new(env: &TestEnv, prefix: &str) -> anyhow::Result<Self> {
        let name = unique_name(prefix);
        let dir = std::env::temp_dir()
            .join("trendstream-session-tests")
            .join(&name);
        std::fs::create_dir_all(&dir)?;
        let redis_url = env.get("REDIS_URL")?.to_owned();
        let (input, output) = (format!("{name}-clicks"), format!("{name}-sessions"));
        let job = Job::new(env, "session-aggregator", name.clone(), input, output)?
            .with("REDIS_URL", &redis_url)
            .with("REDIS_KEY_PREFIX", &name)
            .with("SESSION_GAP", "30m")
            .with("MAX_OUT_OF_ORDERNESS", "30s")
            .with("IDLE_TIMEOUT", "24h")
            .with("COMMIT_INTERVAL", "100ms");
        Ok(Self {
            job,
            redis_url,
            dir,
        })
    }

    /// Sets an environment variable of every replica (`REDIS_URL` also for the checks).
    pub fn with(mut self, key: &str, value: &str) -> Self {
        if key == "REDIS_URL" {
            value.clone_into(&mut self.redis_url);
        }
        self.job = self.job.with(key, value);
        self
    }

    /// The oracle's settings for this job (the defaults the replicas run with).
    pub fn settings(&self) -> Settings {
        Settings {
            redis_prefix: self.name.clone(),
            ..Settings::new(&self.input)
        }
    }

    /// Creates the clickstream and orders topics loadgen sends to.
    pub async fn create_loadgen_topics(&self, partitions: i32) -> anyhow::Result<()> {
        create_topic(&self.bootstrap, &self.input, partitions).await?;
        create_topic(&self.bootstrap, &self.orders(), partitions).await
    }

    fn orders(&self) -> String {
        format!("{}-orders", self.name)
    }

    /// loadgen's event file.
    pub fn events(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }

    /// loadgen sending this job's clicks (and orders, which it does not read) with `args`
    /// (separated by spaces), writing its event file to [`Self::events`].
    pub fn loadgen(&self, args: &str) -> anyhow::Result<Command> {
        let mut command = Command::new(workspace_binary("loadgen")?);
        command
            .args(args.split_whitespace())
            .args(["--quiet", "--fraud-rate", "0"])
            .args([
                "--clicks-topic",
                &self.input,
                "--orders-topic",
                &self.orders(),
            ])
            .arg("--events-file")
            .arg(self.events())
            .env("KAFKA_BOOTSTRAP_SERVERS", &self.bootstrap)
            .env("RUST_LOG", "warn");
        Ok(command)
    }

    /// What the oracle expects of loadgen's event file (and a line saying so).
    pub fn oracle(&self) -> anyhow::Result<Expected> {
        let lines = read_event_file(&self.events())?;
        let expected = expected(&self.settings(), &lines);
        println!(
            "loadgen: {} lines; oracle: {} summaries of {} users, {} late, {} dead, {} bridging clicks",
            lines.len(),
            expected.summary_count(),
            expected.summaries.len(),
            expected.late.len(),
            expected.dead.len(),
            expected.bridging_clicks
        );
        Ok(expected)
    }

    /// SIGTERMs every replica (each must exit cleanly), then removes the job's files.
    pub fn stop(&self, replicas: impl IntoIterator<Item = Replica>) -> anyhow::Result<()> {
        for mut replica in replicas {
            assert!(
                replica.process.terminate(Duration::from_secs(30))?,
                "clean exit on SIGTERM; log {}",
                replica.process.log.display()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }

    /// The committed output, the late and dead-letter topics and Redis equal the oracle's.
    /// Summaries longer than `output_limit` (the output topic's `max.message.bytes`) are
    /// refused by the topic: they are expected in the dead-letter topic instead (header
    /// `target.topic`), their payload omitted if even that topic refuses it.
    pub async fn assert_outputs(
        &self,
        expected: &Expected,
        output_limit: Option<usize>,
    ) -> anyhow::Result<()> {
        let fits = |json: &String| output_limit.is_none_or(|limit| json.len() <= limit);
        let mut committed: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut refused: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (user, summaries) in &expected.summaries {
            for json in summaries {
                let to = if fits(json) {
                    &mut committed
                } else {
                    &mut refused
                };
                to.entry(user.clone()).or_default().push(json.clone());
            }
        }
        let count = |m: &BTreeMap<String, Vec<String>>| m.values().map(Vec::len).sum::<usize>();
        let output = self.read(&self.output, count(&committed), Duration::from_secs(180))?;
        assert_eq!(
            by_key(output.iter()),
            committed,
            "committed sessions, in order"
        );

        let late = self.read(&self.late, expected.late.len(), Duration::from_secs(30))?;
        assert_eq!(
            sorted(late.iter().map(text)),
            sorted(expected.late.iter().cloned()),
            "late clicks"
        );

        let all_dead = expected.dead.len() + count(&refused);
        let dead = self.read(&self.dlq, all_dead, Duration::from_secs(30))?;
        let (outputs, inputs): (Vec<&Incoming>, Vec<&Incoming>) = dead
            .iter()
            .partition(|r| header(r, "target.topic").is_some());
        assert_eq!(
            sorted(inputs.iter().map(|r| text(r))),
            sorted(expected.dead.iter().cloned()),
            "dead letters"
        );
        for record in &dead {
            assert_eq!(header(record, "service"), Some("session-aggregator"));
        }
        for record in &inputs {
            assert_eq!(header(record, "source.topic"), Some(self.input.as_str()));
        }
        for record in &outputs {
            assert_eq!(header(record, "target.topic"), Some(self.output.as_str()));
            assert_eq!(header(record, "source.topic"), Some("(timer)"));
        }
        // A payload even the dead-letter topic refused is omitted, and the error says so.
        let mut refused_got = by_key(outputs.iter().copied());
        for (user, got) in &mut refused_got {
            let want = refused.get(user).cloned().unwrap_or_default();
            for (got, want) in got.iter_mut().zip(want) {
                if got.is_empty() {
                    *got = want;
                }
            }
        }
        assert_eq!(
            refused_got, refused,
            "refused sessions in the dead-letter topic"
        );
        for record in outputs.iter().filter(|r| r.value.is_none()) {
            let error = header(record, "error").unwrap_or_default();
            assert!(error.contains("payload omitted"), "{error}");
        }

        // Redis is written before each transaction commits, so the committed output implies it.
        let dump = crate::redis::dump(&self.redis_url, &self.name).await?;
        anyhow::ensure!(
            dump.hashes.is_empty(),
            "unexpected hashes {:?}",
            dump.hashes
        );
        assert_eq!(
            dump.strings.keys().collect::<Vec<_>>(),
            expected.redis_strings.keys().collect::<Vec<_>>(),
            "feature keys"
        );
        for (key, want) in &expected.redis_strings {
            assert_eq!(dump.strings.get(key), Some(want), "{key}");
        }
        assert_eq!(
            dump.sorted_sets, expected.redis_sorted_sets,
            "user sessions"
        );
        for (key, ttl) in &dump.ttls {
            assert!(*ttl > 0, "{key} has a TTL ({ttl})");
        }
        Ok(())
    }
}

/// Record values by key, in topic order (per partition, so per user).
fn by_key<'a>(records: impl Iterator<Item = &'a Incoming>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in records {
        out.entry(record.key.clone().unwrap_or_default())
            .or_default()
            .push(text(record));
    }
    out
}

/// A header's value.
pub fn header<'a>(record: &'a Incoming, name: &str) -> Option<&'a str> {
    record
        .headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn sorted(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut items: Vec<String> = items.collect();
    items.sort();
    items
}

/// A record's value as text (empty when it has none).
pub fn text(record: &Incoming) -> String {
    String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned()
}

/// A user id (`<base>-<n>`) whose key lands on `partition` of `partitions`.
pub fn user_on(base: &str, partition: i32, partitions: i32) -> String {
    (0..)
        .map(|n| format!("{base}-{n}"))
        .find(|id| partition_for(id.as_bytes(), partitions) == partition)
        .unwrap_or_default()
}

/// Builds an event file's lines, as loadgen writes them: per partition, in arrival order.
pub struct Clicks {
    topic: String,
    partitions: i32,
    lines: Vec<EventLine>,
    seq: usize,
}

impl Clicks {
    pub fn new(topic: &str, partitions: i32) -> Self {
        Self {
            topic: topic.to_owned(),
            partitions,
            lines: Vec::new(),
            seq: 0,
        }
    }

    /// A click of `user` at `ts`; with a category, a product view of it.
    pub fn click(&mut self, user: &str, ts: i64, kind: &str, category: Option<&str>) {
        self.seq += 1;
        let mut value = serde_json::json!({
            "event_id": format!("e{}", self.seq),
            "user_id": user,
            "event_type": kind,
            "ts": ts,
        });
        if let Some(category) = category {
            value["category"] = category.into();
            value["product_id"] = format!("p-{category}").into();
            value["price"] = "149.90".into();
        }
        if self.seq.is_multiple_of(3) {
            value["device"] = if self.seq.is_multiple_of(2) {
                "ios"
            } else {
                "web"
            }
            .into();
        }
        self.raw(user, value.to_string());
    }

    /// Any value, keyed by `key`.
    pub fn raw(&mut self, key: &str, value: String) {
        self.lines.push(EventLine {
            topic: self.topic.clone(),
            partition: partition_for(key.as_bytes(), self.partitions),
            key: Some(key.to_owned()),
            value,
        });
    }

    /// The lines, then a watermark record per partition a day after the latest click, as
    /// loadgen ends a run: every session closes.
    pub fn close_all(mut self) -> Vec<EventLine> {
        let max_ts = self
            .lines
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l.value).ok())
            .filter_map(|v| v["ts"].as_i64())
            .max()
            .unwrap_or_default();
        for partition in 0..self.partitions {
            let user = format!("__watermark__{partition}");
            let value = serde_json::json!({
                "event_id": format!("watermark-{partition}"),
                "user_id": user,
                "event_type": "page_view",
                "ts": max_ts + 24 * 60 * 60 * 1000,
            });
            self.lines.push(EventLine {
                topic: self.topic.clone(),
                partition,
                key: Some(user),
                value: value.to_string(),
            });
        }
        self.lines
    }
}

/// Runs `command` to its end; an error with its stderr unless it succeeded.
pub async fn run_to_end(mut command: Command) -> anyhow::Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    anyhow::ensure!(
        output.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
