//! One run of the whole pipeline, checked against the oracles: loadgen's events to
//! session-aggregator, fraud-detector and revenue-calculator, each with its own output, DLQ and
//! late topics and Redis prefix (all named after its group), however the processors run (local
//! processes in `tests/pipeline.rs`, the operator's pods in `tests/fleet.rs`).

use crate::kafka::{Incoming, misplaced, partition_count, read_committed};
use crate::oracle::{fraud, revenue, sessions};
use crate::process::{Running, workspace_binary};
use crate::processor::Deployment;
use crate::redis::dump;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use trendstream_events::feature_store::KeySpace;
use trendstream_events::{Currency, FraudAlert, RevenueWindow};

/// Out-of-orderness bound of every processor in the run (their default).
pub const BOUND_MS: i64 = 30_000;
/// The three processors, with the input each reads.
pub const PROCESSORS: [(&str, Input); 3] = [
    ("session-aggregator", Input::Clicks),
    ("fraud-detector", Input::Orders),
    ("revenue-calculator", Input::Orders),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    Clicks,
    Orders,
}

/// The names of one run: its input topics and each processor's group, from which its output,
/// DLQ and late topics and its Redis prefix are named.
#[derive(Clone, Debug)]
pub struct Run {
    pub name: String,
    pub clicks: String,
    pub orders: String,
}

impl Run {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            clicks: format!("{name}-clickstream"),
            orders: format!("{name}-orders"),
        }
    }

    pub fn input(&self, input: Input) -> &str {
        match input {
            Input::Clicks => &self.clicks,
            Input::Orders => &self.orders,
        }
    }

    /// The group (and Redis prefix) of one processor.
    pub fn group(&self, processor: &str) -> String {
        format!("{}-{processor}", self.name)
    }

    /// `out`, `dlq` or `late` of one processor.
    pub fn topic(&self, processor: &str, what: &str) -> String {
        format!("{}-{what}", self.group(processor))
    }

    /// A scratch directory for the run's files (loadgen's event file, logs).
    pub fn dir(&self) -> anyhow::Result<PathBuf> {
        let dir = std::env::temp_dir()
            .join("trendstream-e2e")
            .join(&self.name);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}

/// The seed of a run's traffic.
pub const SEED: u64 = 20261123;

/// The three processors of one run as local processes reading from `bootstrap` (with the
/// `settings` every one gets, e.g. Kafka security), each with its own output, DLQ, late topic
/// and Redis prefix; named by group.
pub fn deployments(
    bootstrap: &str,
    redis: &str,
    run: &Run,
    partitions: i32,
    settings: &[(&str, &str)],
) -> anyhow::Result<Vec<(String, Deployment)>> {
    let mut out = Vec::new();
    for (processor, input) in PROCESSORS {
        let group = run.group(processor);
        let mut deployment = Deployment::new(processor, &group)?
            .with("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
            .with("KAFKA_INPUT_TOPICS", run.input(input))
            .with("KAFKA_OUTPUT_TOPIC", run.topic(processor, "out"))
            .with("KAFKA_DLQ_TOPIC", run.topic(processor, "dlq"))
            .with("KAFKA_LATE_TOPIC", run.topic(processor, "late"))
            .with("IDLE_TIMEOUT", "24h")
            .with("REDIS_URL", redis)
            .with("REDIS_KEY_PREFIX", &group);
        if processor == "revenue-calculator" {
            deployment = deployment.with("KAFKA_PARTITIONS", partitions.to_string());
        }
        for (key, value) in settings {
            deployment = deployment.with(key, *value);
        }
        out.push((group, deployment));
    }
    Ok(out)
}

/// Starts loadgen on this machine: `events` events to the run's topics, seeded, at `rate`
/// events/s (0: as fast as it can), with planted fraud and poison pills, and environment
/// `settings` (e.g. Kafka security); the events it sent go to `events_file`.
pub fn start_loadgen(
    bootstrap: &str,
    run: &Run,
    events: u64,
    rate: u32,
    seed: u64,
    events_file: &Path,
    settings: &[(&str, &str)],
) -> anyhow::Result<Running> {
    let mut loadgen = Command::new(workspace_binary("loadgen")?);
    loadgen.args([
        "--bootstrap-servers",
        bootstrap,
        "--clicks-topic",
        &run.clicks,
        "--orders-topic",
        &run.orders,
        "--count",
        &events.to_string(),
        "--rate",
        &rate.to_string(),
        "--seed",
        &seed.to_string(),
        "--users",
        "3000",
        "--fraud-rate",
        "0.02",
        "--poison-rate",
        "0.005",
        "--quiet",
        "--events-file",
    ]);
    loadgen.arg(events_file);
    loadgen.envs(settings.iter().copied());
    Running::start(loadgen, run.dir()?.join(format!("loadgen-{seed}.log")))
}

/// Waits until loadgen has sent everything.
pub async fn wait_for_loadgen(loadgen: &mut Running, timeout: Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    while loadgen.check_alive().is_ok() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "loadgen did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// What the oracles make of the events in `events_file`.
pub struct Expected {
    sessions: sessions::Expected,
    fraud: fraud::Expected,
    revenue: revenue::Expected,
}

impl Expected {
    pub fn compute(run: &Run, events_file: &Path) -> anyhow::Result<Self> {
        let lines = sessions::read_event_file(events_file)?;
        let records = fraud::parse_event_file(&std::fs::read_to_string(events_file)?)?;
        println!("loadgen sent {} records", lines.len());
        let sessions = sessions::expected(
            &sessions::Settings {
                redis_prefix: run.group("session-aggregator"),
                ..sessions::Settings::new(&run.clicks)
            },
            &lines,
        );
        let fraud = fraud::expected(
            &records,
            &run.orders,
            BOUND_MS,
            &run.group("fraud-detector"),
        );
        let revenue = revenue::expected(
            &revenue::Settings {
                topic: run.orders.clone(),
                window_ms: 60_000,
                bound_ms: BOUND_MS,
                currency: Currency::default(),
            },
            &lines,
        );
        println!(
            "oracles: {} sessions, {} alerts, {} revenue windows, {} + {} poison pills, {} + {} late",
            sessions.summary_count(),
            fraud.alerts.len(),
            revenue.windows.len(),
            sessions.dead.len(),
            fraud.dead_letters.len(),
            sessions.late.len(),
            fraud.late.len()
        );
        anyhow::ensure!(
            sessions.dead.len() + fraud.dead_letters.len() > 0,
            "the run has poison pills"
        );
        anyhow::ensure!(!fraud.alerts.is_empty(), "the run has planted fraud");
        Ok(Self {
            sessions,
            fraud,
            revenue,
        })
    }
}

fn text(record: &Incoming) -> String {
    String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned()
}

fn sorted(values: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut values: Vec<String> = values.into_iter().collect();
    values.sort();
    values
}

async fn read(
    bootstrap: &str,
    topic: String,
    expected: usize,
    deadline: Duration,
) -> anyhow::Result<Vec<Incoming>> {
    let bootstrap = bootstrap.to_owned();
    tokio::task::spawn_blocking(move || {
        read_committed(
            &bootstrap,
            &topic,
            expected,
            Duration::from_secs(5),
            deadline,
        )
    })
    .await?
}

/// The runtime's keyed outputs are where a Java producer would put them (murmur2 of the key).
fn assert_keyed_like_java(
    bootstrap: &str,
    topic: &str,
    records: &[Incoming],
) -> anyhow::Result<()> {
    let partitions = partition_count(bootstrap, topic)?;
    let misplaced = misplaced(records, partitions);
    anyhow::ensure!(
        misplaced.is_empty() && records.iter().any(|r| r.key.is_some()),
        "{topic}: {} of {} keyed records not on murmur2(key) % {partitions}, e.g. {:?}",
        misplaced.len(),
        records.len(),
        misplaced.first()
    );
    Ok(())
}

/// The committed outputs of the three processors equal the oracles' (waiting up to `deadline`
/// for them to appear).
pub async fn check_outputs(
    bootstrap: &str,
    run: &Run,
    want: &Expected,
    deadline: Duration,
) -> anyhow::Result<()> {
    let committed = read(
        bootstrap,
        run.topic("session-aggregator", "out"),
        want.sessions.summary_count(),
        deadline,
    )
    .await?;
    let mut summaries: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in &committed {
        summaries
            .entry(record.key.clone().unwrap_or_default())
            .or_default()
            .push(text(record));
    }
    anyhow::ensure!(
        summaries == want.sessions.summaries,
        "session summaries differ from the oracle's"
    );
    assert_keyed_like_java(
        bootstrap,
        &run.topic("session-aggregator", "out"),
        &committed,
    )?;

    let committed = read(
        bootstrap,
        run.topic("fraud-detector", "out"),
        want.fraud.alerts.len(),
        deadline,
    )
    .await?;
    let mut alerts: Vec<FraudAlert> = committed
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_deref().unwrap_or_default()))
        .collect::<Result<_, _>>()?;
    assert_keyed_like_java(bootstrap, &run.topic("fraud-detector", "out"), &committed)?;
    alerts.sort_by(|a, b| a.alert_id.cmp(&b.alert_id));
    anyhow::ensure!(
        alerts == want.fraud.alerts,
        "fraud alerts differ from the oracle's"
    );

    let committed = read(
        bootstrap,
        run.topic("revenue-calculator", "out"),
        want.revenue.windows.len(),
        deadline,
    )
    .await?;
    let mut windows: BTreeMap<i64, RevenueWindow> = BTreeMap::new();
    for record in &committed {
        let window: RevenueWindow =
            serde_json::from_slice(record.value.as_deref().unwrap_or_default())?;
        anyhow::ensure!(
            windows.insert(window.window_start, window).is_none(),
            "a revenue window emitted twice"
        );
    }
    anyhow::ensure!(
        windows == want.revenue.windows,
        "revenue windows differ from the oracle's"
    );
    Ok(())
}

/// Dead letters, late records and the Redis keys equal the oracles', once the outputs are in.
pub async fn check_side_outputs_and_redis(
    bootstrap: &str,
    redis_url: &str,
    run: &Run,
    want: &Expected,
    deadline: Duration,
) -> anyhow::Result<()> {
    for (processor, suffix, expected) in [
        ("session-aggregator", "dlq", &want.sessions.dead),
        ("fraud-detector", "dlq", &want.fraud.dead_letters),
        ("session-aggregator", "late", &want.sessions.late),
        ("fraud-detector", "late", &want.fraud.late),
    ] {
        let got = read(
            bootstrap,
            run.topic(processor, suffix),
            expected.len(),
            deadline,
        )
        .await?;
        anyhow::ensure!(
            sorted(got.iter().map(text)) == sorted(expected.clone()),
            "{processor} {suffix} differs from the oracle's"
        );
    }

    let sessions_group = run.group("session-aggregator");
    let got = dump(redis_url, &sessions_group).await?;
    anyhow::ensure!(
        got.strings == want.sessions.redis_strings,
        "session features in Redis differ from the oracle's"
    );
    anyhow::ensure!(
        got.sorted_sets == want.sessions.redis_sorted_sets,
        "user sessions in Redis differ from the oracle's"
    );
    let got = dump(redis_url, &run.group("fraud-detector")).await?;
    let alerts: BTreeMap<String, FraudAlert> = got
        .strings
        .iter()
        .map(|(k, v)| Ok((k.clone(), serde_json::from_str(v)?)))
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(
        alerts == want.fraud.redis_alerts,
        "alerts in Redis differ from the oracle's"
    );
    let indexes: BTreeMap<String, BTreeSet<(String, i64)>> = got
        .sorted_sets
        .into_iter()
        .map(|(k, members)| (k, members.into_iter().collect()))
        .collect();
    anyhow::ensure!(
        indexes == want.fraud.redis_indexes,
        "alert indexes in Redis differ from the oracle's"
    );
    let revenue_group = run.group("revenue-calculator");
    let got = dump(redis_url, &revenue_group).await?;
    let keys = KeySpace::new(revenue_group.clone());
    let stored = got
        .hashes
        .get(&keys.revenue_windows())
        .cloned()
        .unwrap_or_default();
    anyhow::ensure!(
        stored.len() == want.revenue.windows.len(),
        "revenue windows in Redis: {} stored, {} expected",
        stored.len(),
        want.revenue.windows.len()
    );
    for (start, window) in &want.revenue.windows {
        let value = stored
            .get(&start.to_string())
            .map(String::as_str)
            .unwrap_or("null");
        anyhow::ensure!(
            &serde_json::from_str::<RevenueWindow>(value)? == window,
            "Redis revenue window {start} differs from the oracle's"
        );
    }
    Ok(())
}
