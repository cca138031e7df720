//! The whole pipeline against the real broker and Redis: loadgen sends 500 000 events (planted
//! fraud, out-of-order and late events, 0.5% poison pills) to session-aggregator,
//! fraud-detector and revenue-calculator, two replicas each; their committed outputs and Redis
//! keys must equal the oracles' exactly, and every poison pill must be in a DLQ. The second test
//! does the same while a random replica is SIGKILLed (and restarted) every 10 s.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use trendstream_e2e::kafka::{Incoming, create_topic, read_committed};
use trendstream_e2e::oracle::{fraud, revenue, sessions};
use trendstream_e2e::process::{Running, workspace_binary};
use trendstream_e2e::processor::{Deployment, Replica};
use trendstream_e2e::redis::dump;
use trendstream_e2e::{TestEnv, unique_name};
use trendstream_events::feature_store::KeySpace;
use trendstream_events::{Currency, FraudAlert, RevenueWindow};

const PARTITIONS: i32 = 6;
const EVENTS: u64 = 500_000;
const BOUND_MS: i64 = 30_000;
/// How long the outputs may take to appear (debug builds, six processes on two cores).
const DEADLINE: Duration = Duration::from_secs(900);

struct Topics {
    clicks: String,
    orders: String,
}

fn topic(name: &str, what: &str) -> String {
    format!("{name}-{what}")
}

/// The three processors of one run, each with its own output, DLQ, late topic and Redis prefix.
fn deployments(
    env: &TestEnv,
    name: &str,
    topics: &Topics,
) -> anyhow::Result<Vec<(String, Deployment)>> {
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?;
    let redis = env.get("REDIS_URL")?;
    let mut out = Vec::new();
    for (processor, input, extra) in [
        ("session-aggregator", &topics.clicks, None),
        ("fraud-detector", &topics.orders, None),
        (
            "revenue-calculator",
            &topics.orders,
            Some(("KAFKA_PARTITIONS", PARTITIONS.to_string())),
        ),
    ] {
        let group = topic(name, processor);
        let mut deployment = Deployment::new(processor, &group)?
            .with("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
            .with("KAFKA_INPUT_TOPICS", input)
            .with("KAFKA_OUTPUT_TOPIC", topic(&group, "out"))
            .with("KAFKA_DLQ_TOPIC", topic(&group, "dlq"))
            .with("KAFKA_LATE_TOPIC", topic(&group, "late"))
            .with("IDLE_TIMEOUT", "24h")
            .with("REDIS_URL", redis)
            .with("REDIS_KEY_PREFIX", &group);
        if let Some((key, value)) = extra {
            deployment = deployment.with(key, value);
        }
        out.push((group, deployment));
    }
    Ok(out)
}

fn read(bootstrap: &str, topic: &str, expected: usize) -> anyhow::Result<Vec<Incoming>> {
    read_committed(bootstrap, topic, expected, Duration::from_secs(5), DEADLINE)
}

fn text(record: &Incoming) -> String {
    String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned()
}

fn sorted(values: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut values: Vec<String> = values.into_iter().collect();
    values.sort();
    values
}

async fn run_pipeline(chaos: bool) -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
    let name = unique_name(if chaos { "chaos" } else { "pipeline" });
    let topics = Topics {
        clicks: topic(&name, "clickstream"),
        orders: topic(&name, "orders"),
    };
    create_topic(&bootstrap, &topics.clicks, PARTITIONS).await?;
    create_topic(&bootstrap, &topics.orders, PARTITIONS).await?;
    let dir = std::env::temp_dir().join("trendstream-e2e").join(&name);
    std::fs::create_dir_all(&dir)?;
    let events_file = dir.join("events.jsonl");

    let jobs = deployments(&env, &name, &topics)?;
    let mut replicas: Vec<(usize, String, Replica)> = Vec::new();
    for (index, (group, deployment)) in jobs.iter().enumerate() {
        for replica in 0..2 {
            let instance = format!("{group}-{replica}");
            replicas.push((index, instance.clone(), deployment.start(&instance).await?));
        }
    }
    let replicas = Arc::new(Mutex::new(replicas));

    let mut loadgen = Command::new(workspace_binary("loadgen")?);
    loadgen.args([
        "--bootstrap-servers",
        &bootstrap,
        "--clicks-topic",
        &topics.clicks,
        "--orders-topic",
        &topics.orders,
        "--count",
        &EVENTS.to_string(),
        "--rate",
        "0",
        "--seed",
        "20261123",
        "--users",
        "3000",
        "--fraud-rate",
        "0.02",
        "--poison-rate",
        "0.005",
        "--quiet",
        "--events-file",
    ]);
    loadgen.arg(&events_file);
    let mut loadgen = Running::start(loadgen, dir.join("loadgen.log"))?;

    // Chaos: every 10 s a random replica is SIGKILLed and started again (same pod name, same
    // disk: a container restart).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let chaos_task = chaos.then(|| {
        let replicas = replicas.clone();
        let jobs = jobs.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut kills = 0u64;
            let mut state = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
                | 1;
            println!("chaos: seed {state}");
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(10)).await;
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let mut replicas = replicas.lock().await;
                let pick = (state % replicas.len() as u64) as usize;
                let (job, instance, replica) = &mut replicas[pick];
                replica.process.kill_now()?;
                kills += 1;
                println!("chaos: SIGKILL {instance} (kill {kills})");
                *replica = jobs[*job].1.start(instance).await?;
            }
            anyhow::Ok(kills)
        })
    });

    // The events loadgen sent, and what each processor must make of them.
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while loadgen.check_alive().is_ok() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "loadgen did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let lines = sessions::read_event_file(&events_file)?;
    let records = fraud::parse_event_file(&std::fs::read_to_string(&events_file)?)?;
    println!("loadgen sent {} records", lines.len());
    let (sessions_group, fraud_group, revenue_group) = (&jobs[0].0, &jobs[1].0, &jobs[2].0);
    let want_sessions = sessions::expected(
        &sessions::Settings {
            redis_prefix: sessions_group.clone(),
            ..sessions::Settings::new(&topics.clicks)
        },
        &lines,
    );
    let want_fraud = fraud::expected(&records, &topics.orders, BOUND_MS, fraud_group);
    let want_revenue = revenue::expected(
        &revenue::Settings {
            topic: topics.orders.clone(),
            window_ms: 60_000,
            bound_ms: BOUND_MS,
            currency: Currency::default(),
        },
        &lines,
    );
    let poison_clicks = want_sessions.dead.len();
    let poison_orders = want_fraud.dead_letters.len();
    println!(
        "oracles: {} sessions, {} alerts, {} revenue windows, {} + {} poison pills, {} + {} late",
        want_sessions.summary_count(),
        want_fraud.alerts.len(),
        want_revenue.windows.len(),
        poison_clicks,
        poison_orders,
        want_sessions.late.len(),
        want_fraud.late.len()
    );
    assert!(
        poison_clicks + poison_orders > 0,
        "the run has poison pills"
    );
    assert!(!want_fraud.alerts.is_empty(), "the run has planted fraud");

    // session-aggregator: summaries per user in order, late, DLQ, Redis.
    let committed = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        let topic = topic(sessions_group, "out");
        let count = want_sessions.summary_count();
        move || read(&bootstrap, &topic, count)
    })
    .await??;
    let mut summaries: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in &committed {
        summaries
            .entry(record.key.clone().unwrap_or_default())
            .or_default()
            .push(text(record));
    }
    anyhow::ensure!(
        summaries == want_sessions.summaries,
        "session summaries differ from the oracle's"
    );

    let committed = read(
        &bootstrap,
        &topic(fraud_group, "out"),
        want_fraud.alerts.len(),
    )?;
    let mut alerts: Vec<FraudAlert> = committed
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_deref().unwrap_or_default()))
        .collect::<Result<_, _>>()?;
    alerts.sort_by(|a, b| a.alert_id.cmp(&b.alert_id));
    anyhow::ensure!(
        alerts == want_fraud.alerts,
        "fraud alerts differ from the oracle's"
    );

    let committed = read(
        &bootstrap,
        &topic(revenue_group, "out"),
        want_revenue.windows.len(),
    )?;
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
        windows == want_revenue.windows,
        "revenue windows differ from the oracle's"
    );

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Some(task) = chaos_task {
        let kills = task.await??;
        println!("chaos: {kills} replicas killed during the run");
        assert!(kills >= 1, "chaos killed at least one replica");
    }

    // Dead letters, late records and Redis, once everything is processed.
    for (group, suffix, want) in [
        (sessions_group, "dlq", &want_sessions.dead),
        (fraud_group, "dlq", &want_fraud.dead_letters),
        (sessions_group, "late", &want_sessions.late),
        (fraud_group, "late", &want_fraud.late),
    ] {
        let got = read(&bootstrap, &topic(group, suffix), want.len())?;
        assert_eq!(
            sorted(got.iter().map(text)),
            sorted(want.clone()),
            "{group} {suffix}"
        );
    }

    let redis_url = env.get("REDIS_URL")?;
    let got = dump(redis_url, sessions_group).await?;
    assert_eq!(
        got.strings, want_sessions.redis_strings,
        "session features in Redis"
    );
    assert_eq!(
        got.sorted_sets, want_sessions.redis_sorted_sets,
        "user sessions in Redis"
    );
    let got = dump(redis_url, fraud_group).await?;
    let alerts: BTreeMap<String, FraudAlert> = got
        .strings
        .iter()
        .map(|(k, v)| Ok((k.clone(), serde_json::from_str(v)?)))
        .collect::<anyhow::Result<_>>()?;
    assert_eq!(alerts, want_fraud.redis_alerts, "alerts in Redis");
    let indexes: BTreeMap<String, BTreeSet<(String, i64)>> = got
        .sorted_sets
        .into_iter()
        .map(|(k, members)| (k, members.into_iter().collect()))
        .collect();
    assert_eq!(indexes, want_fraud.redis_indexes, "alert indexes in Redis");
    let got = dump(redis_url, revenue_group).await?;
    let keys = KeySpace::new(revenue_group.clone());
    let stored = got
        .hashes
        .get(&keys.revenue_windows())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        stored.len(),
        want_revenue.windows.len(),
        "revenue windows in Redis"
    );
    for (start, window) in &want_revenue.windows {
        let value = stored
            .get(&start.to_string())
            .map(String::as_str)
            .unwrap_or("null");
        assert_eq!(
            &serde_json::from_str::<RevenueWindow>(value)?,
            window,
            "Redis window {start}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pipeline_equals_the_oracles() -> anyhow::Result<()> {
    run_pipeline(false).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pipeline_equals_the_oracles_with_a_replica_killed_every_10_seconds()
-> anyhow::Result<()> {
    run_pipeline(true).await
}
