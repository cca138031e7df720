//! session-aggregator against the real broker and Redis: a small event file with out-of-order
//! clicks, a late click, a click bridging two open sessions and a poison pill, produced as
//! loadgen would (with a watermark record per partition), processed by two replicas, and
//! compared with the oracle (`trendstream_e2e::oracle::sessions`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use trendstream_e2e::kafka::{Incoming, Outgoing, create_topic, produce_records, read_committed};
use trendstream_e2e::oracle::partition_for;
use trendstream_e2e::oracle::sessions::{self, EventLine, Expected, Settings};
use trendstream_e2e::process::workspace_binary;
use trendstream_e2e::processor::{Deployment, Replica};
use trendstream_e2e::{TestEnv, unique_name};

const PARTITIONS: i32 = 4;
const T0: i64 = 1_700_000_000_000;
const SEC: i64 = 1_000;
const MIN: i64 = 60 * SEC;

/// A user id (`<base>-<n>`) whose key lands on `partition`.
fn user_on(base: &str, partition: i32) -> String {
    (0..)
        .map(|n| format!("{base}-{n}"))
        .find(|id| partition_for(id.as_bytes(), PARTITIONS) == partition)
        .unwrap_or_default()
}

/// Builds the event file's lines: per partition, in arrival order.
struct Events {
    topic: String,
    lines: Vec<EventLine>,
    seq: usize,
}

impl Events {
    fn click(&mut self, user: &str, ts: i64, kind: &str, category: Option<&str>) {
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

    fn raw(&mut self, key: &str, value: String) {
        self.lines.push(EventLine {
            topic: self.topic.clone(),
            partition: partition_for(key.as_bytes(), PARTITIONS),
            key: Some(key.to_owned()),
            value,
        });
    }
}

/// The scenario, one concern per partition so each partition's watermark is what the comments
/// say; then a watermark record per partition, as loadgen ends a run.
fn scenario(topic: &str) -> Vec<EventLine> {
    let mut e = Events {
        topic: topic.to_owned(),
        lines: Vec::new(),
        seq: 0,
    };
    let gap = 30 * MIN;
    // Partition 0: gap boundaries and clicks out of order.
    let alice = user_on("alice", 0);
    let bob = user_on("bob", 0);
    e.click(&alice, T0, "page_view", None);
    e.click(&alice, T0 + MIN, "product_view", Some("electronics"));
    e.click(&bob, T0 + 5 * MIN, "product_view", Some("books"));
    e.click(&bob, T0 + 4 * MIN + 40 * SEC, "page_view", None); // 20 s out of order
    e.click(&alice, T0 + 2 * MIN, "add_to_cart", Some("electronics")); // 3 min behind, session open
    e.click(&bob, T0 + 6 * MIN, "add_to_cart", Some("books"));
    e.click(&bob, T0 + 6 * MIN, "remove_from_cart", Some("toys")); // same time: later arrival wins
    e.click(&alice, T0 + 2 * MIN + gap, "checkout_start", None); // exactly a gap: joins
    e.click(&alice, T0 + 2 * MIN + 2 * gap + 1, "search", Some("garden")); // gap + 1 ms: new
    // Partition 1: a click behind the watermark bridges two open sessions.
    let carol = user_on("carol", 1);
    e.click(&carol, T0, "page_view", Some("fashion"));
    e.click(&carol, T0 + gap + 10 * SEC, "product_view", Some("shoes")); // first one still open
    e.click(&carol, T0 + 15 * MIN, "add_to_cart", Some("fashion")); // bridges both
    e.click(&carol, T0 + gap + 11 * SEC, "page_view", None);
    // Partition 2: a session closes, then a click for its time range is late.
    let dave = user_on("dave", 2);
    e.click(&dave, T0, "page_view", Some("books"));
    e.click(&dave, T0 + 2 * 60 * MIN, "search", None); // closes the first session
    e.click(&dave, T0 + 60 * MIN, "product_view", Some("toys")); // late: its session closed
    e.click(&dave, T0 + 10 * MIN, "add_to_cart", Some("books")); // late too
    e.click(&dave, T0 + 2 * 60 * MIN + MIN, "checkout_start", None);
    // Partition 3: a poison pill between good clicks.
    let erin = user_on("erin", 3);
    e.click(&erin, T0 + 10 * MIN, "page_view", None);
    e.raw(&erin, "{\"event_id\":\"poison-1\",\"user_id\":".to_owned());
    e.click(&erin, T0 + 12 * MIN, "search", Some("garden"));
    let max_ts = e
        .lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l.value).ok())
        .filter_map(|v| v["ts"].as_i64())
        .max()
        .unwrap_or(T0);
    for partition in 0..PARTITIONS {
        let user = format!("__watermark__{partition}");
        let value = serde_json::json!({
            "event_id": format!("watermark-{partition}"),
            "user_id": user,
            "event_type": "page_view",
            "ts": max_ts + 24 * 60 * MIN,
        });
        e.lines.push(EventLine {
            topic: topic.to_owned(),
            partition,
            key: Some(user),
            value: value.to_string(),
        });
    }
    e.lines
}

struct Job {
    name: String,
    bootstrap: String,
    redis_url: String,
    input: String,
    output: String,
    dlq: String,
    late: String,
    /// Where the test keeps its event file.
    dir: PathBuf,
    deployment: Deployment,
}

impl Job {
    fn new(env: &TestEnv, prefix: &str) -> anyhow::Result<Self> {
        let name = unique_name(prefix);
        let dir = std::env::temp_dir()
            .join("trendstream-session-tests")
            .join(&name);
        std::fs::create_dir_all(&dir)?;
        let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
        let redis_url = env.get("REDIS_URL")?.to_owned();
        let (input, output) = (format!("{name}-clicks"), format!("{name}-sessions"));
        let (dlq, late) = (format!("{name}-dlq"), format!("{name}-late"));
        let deployment = Deployment::new("session-aggregator", &name)?
            .with("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
            .with("KAFKA_INPUT_TOPICS", &input)
            .with("KAFKA_OUTPUT_TOPIC", &output)
            .with("KAFKA_DLQ_TOPIC", &dlq)
            .with("KAFKA_LATE_TOPIC", &late)
            .with("REDIS_URL", &redis_url)
            .with("REDIS_KEY_PREFIX", &name)
            .with("SESSION_GAP", "30m")
            .with("MAX_OUT_OF_ORDERNESS", "30s")
            .with("IDLE_TIMEOUT", "24h")
            .with("COMMIT_INTERVAL", "100ms");
        Ok(Self {
            name,
            bootstrap,
            redis_url,
            input,
            output,
            dlq,
            late,
            dir,
            deployment,
        })
    }

    /// The oracle's settings for this job (the defaults the replicas run with).
    fn settings(&self) -> Settings {
        Settings {
            redis_prefix: self.name.clone(),
            ..Settings::new(&self.input)
        }
    }

    /// Starts replica `instance` and waits until it is ready.
    async fn start(&self, instance: &str) -> anyhow::Result<Replica> {
        self.deployment.start(instance).await
    }

    fn read(
        &self,
        topic: &str,
        expected: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Incoming>> {
        read_committed(
            &self.bootstrap,
            topic,
            expected,
            Duration::from_secs(3),
            timeout,
        )
    }

    /// SIGTERMs every replica (each must exit cleanly), then removes the job's files.
    fn stop(&self, replicas: impl IntoIterator<Item = Replica>) -> anyhow::Result<()> {
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
    async fn assert_outputs(&self, expected: &Expected) -> anyhow::Result<()> {
        let output = self.read(
            &self.output,
            expected.summary_count(),
            Duration::from_secs(180),
        )?;
        let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for record in &output {
            got.entry(record.key.clone().unwrap_or_default())
                .or_default()
                .push(text(record));
        }
        assert_eq!(got.len(), expected.summaries.len(), "users with sessions");
        for (user, want) in &expected.summaries {
            assert_eq!(
                got.get(user),
                Some(want),
                "committed sessions of {user}, in order"
            );
        }

        let late = self.read(&self.late, expected.late.len(), Duration::from_secs(30))?;
        assert_eq!(
            sorted(late.iter().map(text)),
            sorted(expected.late.iter().cloned()),
            "late clicks"
        );

        let dead = self.read(&self.dlq, expected.dead.len(), Duration::from_secs(30))?;
        assert_eq!(
            sorted(dead.iter().map(text)),
            sorted(expected.dead.iter().cloned()),
            "dead letters"
        );
        for record in &dead {
            let headers: BTreeMap<_, _> = record.headers.iter().cloned().collect();
            assert_eq!(
                headers.get("service").map(String::as_str),
                Some("session-aggregator")
            );
            assert_eq!(headers.get("source.topic"), Some(&self.input));
        }

        // Redis is written before each transaction commits, so the committed output implies it.
        let (found, ttls) = redis_contents(&self.redis_url, &self.name).await?;
        assert_eq!(
            found.redis_strings.keys().collect::<Vec<_>>(),
            expected.redis_strings.keys().collect::<Vec<_>>(),
            "feature keys"
        );
        for (key, want) in &expected.redis_strings {
            assert_eq!(found.redis_strings.get(key), Some(want), "{key}");
        }
        assert_eq!(
            found.redis_sorted_sets, expected.redis_sorted_sets,
            "user sessions"
        );
        for (key, ttl) in &ttls {
            assert!(*ttl > 0, "{key} has a TTL ({ttl})");
        }
        Ok(())
    }
}

/// The replica's `trendstream_records_in_total`, summed over topics (0 when unreachable).
async fn records_in(port: u16) -> u64 {
    let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
        return 0;
    };
    let body = response.text().await.unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with("trendstream_records_in_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn sorted(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut items: Vec<String> = items.collect();
    items.sort();
    items
}

fn text(record: &Incoming) -> String {
    String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned()
}

/// Every key under the job's prefix, with its value (strings) or members and scores (sorted
/// sets), and TTLs.
async fn redis_contents(
    redis_url: &str,
    prefix: &str,
) -> anyhow::Result<(Expected, BTreeMap<String, i64>)> {
    let dump = trendstream_e2e::redis::dump(redis_url, prefix).await?;
    anyhow::ensure!(
        dump.hashes.is_empty(),
        "unexpected hashes {:?}",
        dump.hashes
    );
    let found = Expected {
        redis_strings: dump.strings,
        redis_sorted_sets: dump.sorted_sets,
        ..Expected::default()
    };
    Ok((found, dump.ttls))
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_match_the_oracle() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let job = Job::new(&env, "sessions")?;

    // The event file, as loadgen writes it; the oracle reads it back.
    let event_file = job.dir.join("events.jsonl");
    let mut file_text = String::new();
    for line in scenario(&job.input) {
        file_text.push_str(&serde_json::to_string(&line)?);
        file_text.push('\n');
    }
    std::fs::write(&event_file, file_text)?;
    let lines = sessions::read_event_file(&event_file)?;
    let expected = sessions::expected(&job.settings(), &lines);
    // The data set exercises what it is meant to.
    assert_eq!(expected.bridging_clicks, 1, "one bridging click");
    assert_eq!(expected.late.len(), 2, "dave's two late clicks");
    assert_eq!(expected.dead.len(), 1, "one poison pill");
    assert_eq!(expected.summary_count(), 7, "every user's sessions close");
    println!(
        "event file {}: {} lines; oracle: {} summaries, {} Redis keys, {} late, {} dead",
        event_file.display(),
        lines.len(),
        expected.summary_count(),
        expected.redis_strings.len() + expected.redis_sorted_sets.len(),
        expected.late.len(),
        expected.dead.len()
    );

    create_topic(&job.bootstrap, &job.input, PARTITIONS).await?;
    let replicas = [job.start("replica-0").await?, job.start("replica-1").await?];
    let records: Vec<Outgoing> = lines.iter().map(EventLine::to_outgoing).collect();
    produce_records(&job.bootstrap, &job.input, &records)?;
    job.assert_outputs(&expected).await?;
    job.stop(replicas)
}

/// loadgen's own traffic (its event file is the oracle's input) through two replicas, one of
/// them SIGKILLed and restarted while it works: the outputs are still exactly the oracle's.
#[tokio::test(flavor = "multi_thread")]
async fn loadgen_traffic_with_a_replica_killed_matches_the_oracle() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let job = Job::new(&env, "sessions-loadgen")?;
    let orders = format!("{}-orders", job.name);
    create_topic(&job.bootstrap, &job.input, PARTITIONS).await?;
    create_topic(&job.bootstrap, &orders, PARTITIONS).await?;
    // Both replicas run while loadgen produces; replica-0 is SIGKILLed right after it finished
    // and restarted with the same identity and state directory.
    let mut replica0 = job.start("replica-0").await?;
    let replica1 = job.start("replica-1").await?;
    let event_file = job.dir.join("events.jsonl");
    let output = {
        let mut command = Command::new(workspace_binary("loadgen")?);
        command
            .args(["--seed", "11", "--users", "120", "--count", "8000"])
            .args(["--rate", "0", "--quiet", "--fraud-rate", "0"])
            .args(["--poison-rate", "0.005", "--out-of-order-rate", "0.05"])
            .args(["--late-rate", "0.01"])
            .args(["--clicks-topic", &job.input, "--orders-topic", &orders])
            .arg("--events-file")
            .arg(&event_file)
            .env("KAFKA_BOOTSTRAP_SERVERS", &job.bootstrap)
            .env("RUST_LOG", "warn");
        tokio::task::spawn_blocking(move || command.output()).await??
    };
    anyhow::ensure!(
        output.status.success(),
        "loadgen failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let read = records_in(replica0.port).await;
    replica0.process.kill_now()?;
    println!("replica-0 SIGKILLed after reading {read} records");
    let replica0 = job.start("replica-0").await?;

    let lines = sessions::read_event_file(&event_file)?;
    let expected = sessions::expected(&job.settings(), &lines);
    println!(
        "loadgen: {} lines; oracle: {} summaries of {} users, {} late, {} dead, {} bridging clicks",
        lines.len(),
        expected.summary_count(),
        expected.summaries.len(),
        expected.late.len(),
        expected.dead.len(),
        expected.bridging_clicks
    );
    assert!(
        expected.summary_count() > 100,
        "enough sessions to be a test"
    );
    // loadgen's late clicks are behind the partition's watermark, but mostly within their
    // user's open session, which they join (on time for sessions); its poison pills go to the DLQ.
    assert!(!expected.dead.is_empty(), "poison pills in the run");
    job.assert_outputs(&expected).await?;
    job.stop([replica0, replica1])
}
