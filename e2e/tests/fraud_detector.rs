//! fraud-detector against the real broker and Redis: a small planted order set, written as an
//! event file (docs/processors.md), produced, processed by two replicas, and compared with the
//! oracle (`trendstream_e2e::oracle::fraud`): committed alerts, Redis, late topic and DLQ.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use trendstream_e2e::kafka::{Incoming, Outgoing, create_topic, produce_records, read_committed};
use trendstream_e2e::oracle::fraud::{Expected, FileRecord, expected, parse_event_file};
use trendstream_e2e::process::{Running, free_port, workspace_binary};
use trendstream_e2e::{TestEnv, unique_name};
use trendstream_events::FraudAlert;

const PARTITIONS: i32 = 3;
const BOUND_MS: i64 = 30_000;
const T0: i64 = 1_700_000_000_000;
const S: i64 = 1_000;
const MIN: i64 = 60 * S;

/// Builds the event file: records in production order, each with its partition. Users are
/// spread over the partitions round-robin (the processor only relies on every record of a user
/// being in one partition), and each user's times are relative to its own base, 30 minutes after
/// the previous user's, so that users planted later do not make earlier ones late.
struct EventFile {
    topic: String,
    records: Vec<FileRecord>,
    /// Users: partition and base event time.
    users: BTreeMap<String, (i32, i64)>,
}

impl EventFile {
    fn new(topic: &str) -> Self {
        Self {
            topic: topic.to_owned(),
            records: Vec::new(),
            users: BTreeMap::new(),
        }
    }

    fn user(&mut self, user: &str) -> (i32, i64) {
        let index = self.users.len() as i64;
        *self.users.entry(user.to_owned()).or_insert((
            (index % i64::from(PARTITIONS)) as i32,
            T0 + index * 30 * MIN,
        ))
    }

    fn partition(&mut self, user: &str) -> i32 {
        self.user(user).0
    }

    fn raw(&mut self, user: &str, value: String) {
        let partition = self.partition(user);
        self.records.push(FileRecord {
            topic: self.topic.clone(),
            partition,
            key: Some(user.to_owned()),
            value,
        });
    }

    fn order_with(
        &mut self,
        user: &str,
        order: &str,
        status: &str,
        at: i64,
        amount: &str,
        currency: &str,
    ) {
        let value = serde_json::json!({
            "event_id": format!("ev-{order}-{status}"),
            "order_id": order,
            "user_id": user,
            "status": status,
            "amount": amount,
            "currency": currency,
            "items": [{"product_id": "p-1", "category": "electronics", "quantity": 1, "unit_price": amount}],
            "ts": self.user(user).1 + at,
        });
        self.raw(user, value.to_string());
    }

    fn order(&mut self, user: &str, order: &str, at: i64, amount: &str) {
        self.order_with(user, order, "placed", at, amount, "TRY");
    }

    /// Ends every partition with a watermark record at the run's max event time + 1 day.
    fn finish(&mut self) {
        let max = self
            .records
            .iter()
            .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.value).ok())
            .filter_map(|v| v["ts"].as_i64())
            .max()
            .unwrap_or(T0);
        for partition in 0..PARTITIONS {
            let user = format!("__watermark__{partition}");
            self.users.insert(user.clone(), (partition, max));
            let value = serde_json::json!({
                "event_id": format!("ev-watermark-{partition}"),
                "order_id": format!("watermark-{partition}"),
                "user_id": user,
                "status": "placed",
                "amount": "1.00",
                "ts": max + 24 * 60 * MIN,
            });
            self.raw(&user, value.to_string());
        }
    }

    fn to_json_lines(&self) -> anyhow::Result<String> {
        let mut out = String::new();
        for r in &self.records {
            out.push_str(&serde_json::to_string(&serde_json::json!({
                "topic": r.topic, "partition": r.partition, "key": r.key, "value": r.value,
            }))?);
            out.push('\n');
        }
        Ok(out)
    }
}

/// The planted orders, in production order (the order within each partition).
fn planted(topic: &str) -> EventFile {
    let mut f = EventFile::new(topic);
    // Three orders, the last exactly 5 minutes after the first: RAPID_ORDERS.
    f.order("u-rapid", "rapid-1", 0, "120.00");
    f.order("u-rapid", "rapid-2", 150 * S, "80.00");
    f.order("u-rapid", "rapid-3", 5 * MIN, "99.90");
    // The third 5 minutes + 1 ms after the first: nothing.
    f.order("u-slow", "slow-1", 0, "10");
    f.order("u-slow", "slow-2", 2 * MIN, "10");
    f.order("u-slow", "slow-3", 5 * MIN + 1, "10");
    // First order ever above 5000 TRY: HIGH_VALUE_FIRST_ORDER; exactly 5000: nothing, and the
    // later big order is not a first order.
    f.order("u-first", "first-1", MIN, "5000.01");
    f.order("u-exact", "exact-1", MIN, "5000.00");
    f.order("u-exact", "exact-2", 20 * MIN, "9000");
    // A first order in EUR never passes the TRY threshold.
    f.order_with("u-eur", "eur-1", "placed", MIN, "9000", "EUR");
    // Three orders above 5000 within 5 minutes: FIRST, RAPID and BURST; a fourth, exactly
    // 5000, is rapid but not part of the burst.
    f.order("u-burst", "burst-1", 0, "6000");
    f.order("u-burst", "burst-2", 2 * MIN, "7500.50");
    f.order("u-burst", "burst-3", 4 * MIN, "5000.01");
    f.order("u-burst", "burst-4", 4 * MIN + S, "5000");
    // Paid, cancelled and refunded events are not placed orders.
    f.order("u-status", "st-1", 0, "10");
    f.order_with("u-status", "st-1", "paid", 10 * S, "10", "TRY");
    f.order_with("u-status", "st-1", "cancelled", 20 * S, "10", "TRY");
    f.order("u-status", "st-2", 30 * S, "10");
    // Out of order within the bound: evaluated in event-time order (ooo-1, ooo-2, ooo-3).
    f.order("u-ooo", "ooo-3", 10 * MIN + 60 * S, "10");
    f.order("u-ooo", "ooo-1", 10 * MIN + 40 * S, "10");
    f.order("u-ooo", "ooo-2", 10 * MIN + 50 * S, "10");
    // Same event time: the order id breaks the tie.
    f.order("u-ties", "tie-c", 3 * MIN, "10");
    f.order("u-ties", "tie-a", 3 * MIN, "10");
    f.order("u-ties", "tie-b", 3 * MIN, "10");
    // A user id that cannot be a Redis key: the alert goes to Kafka only.
    f.order("u bad", "bad-1", 0, "7000");
    // A poison pill.
    f.raw("u-poison", "{\"event_id\":\"x\",\"amount\":12.5".into());
    // Another user moves u-late's partition 30 minutes on, then an order between u-late's two
    // arrives: late, never evaluated (it would have made three within 5 minutes).
    f.order("u-late", "late-1", 0, "10");
    f.order("u-late", "late-2", 2 * MIN, "10");
    let (late_partition, late_base) = f.user("u-late");
    f.users
        .insert("u-push".into(), (late_partition, late_base + 30 * MIN));
    f.order("u-push", "push-1", 0, "10");
    f.order("u-late", "late-3", MIN, "10");
    f.finish();
    f
}

#[allow(clippy::too_many_arguments)]
async fn start_replica(
    env: &TestEnv,
    dir: &std::path::Path,
    group: &str,
    input: &str,
    output: &str,
    dlq: &str,
    late: &str,
    prefix: &str,
    instance: &str,
) -> anyhow::Result<Running> {
    let port = free_port()?;
    let mut command = Command::new(workspace_binary("fraud-detector")?);
    command
        .env(
            "KAFKA_BOOTSTRAP_SERVERS",
            env.get("KAFKA_BOOTSTRAP_SERVERS")?,
        )
        .env("KAFKA_INPUT_TOPICS", input)
        .env("KAFKA_OUTPUT_TOPIC", output)
        .env("KAFKA_CONSUMER_GROUP", group)
        .env("KAFKA_DLQ_TOPIC", dlq)
        .env("KAFKA_LATE_TOPIC", late)
        .env("KAFKA_SESSION_TIMEOUT", "6s")
        .env("MAX_OUT_OF_ORDERNESS", "30s")
        .env("IDLE_TIMEOUT", "24h")
        .env("REDIS_URL", env.get("REDIS_URL")?)
        .env("REDIS_KEY_PREFIX", prefix)
        .env("POD_NAME", instance)
        .env("STATE_DIR", dir.join(instance).join("state"))
        .env("TRENDSTREAM_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info,librdkafka=warn");
    let log = dir.join(format!("{instance}-{}.log", unique_name("run")));
    let mut process = Running::start(command, log)?;
    process.wait_ready(port, Duration::from_secs(90)).await?;
    Ok(process)
}

/// The committed records of `topic` (at least `expected`) and their values as text.
fn read_values(
    bootstrap: &str,
    topic: &str,
    expected: usize,
) -> anyhow::Result<(Vec<Incoming>, Vec<String>)> {
    let records = read_committed(
        bootstrap,
        topic,
        expected,
        Duration::from_secs(3),
        Duration::from_secs(30),
    )?;
    let values = records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    Ok((records, values))
}

/// Every key under `prefix`, as the oracle describes them.
async fn redis_state(
    url: &str,
    prefix: &str,
) -> anyhow::Result<(
    BTreeMap<String, FraudAlert>,
    BTreeMap<String, BTreeSet<(String, i64)>>,
)> {
    let dump = trendstream_e2e::redis::dump(url, prefix).await?;
    anyhow::ensure!(
        dump.hashes.is_empty(),
        "unexpected hashes {:?}",
        dump.hashes
    );
    let strings = dump
        .strings
        .into_iter()
        .map(|(key, value)| Ok((key, serde_json::from_str(&value)?)))
        .collect::<anyhow::Result<_>>()?;
    let sets = dump
        .sorted_sets
        .into_iter()
        .map(|(key, members)| (key, members.into_iter().collect()))
        .collect();
    Ok((strings, sets))
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_match_the_oracle_with_two_replicas() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
    let name = unique_name("fraud");
    let input = format!("{name}-orders");
    let output = format!("{name}-alerts");
    let dlq = format!("{name}-dlq");
    let late = format!("{name}-late");
    let prefix = name.clone();
    create_topic(&bootstrap, &input, PARTITIONS).await?;
    let dir: PathBuf = std::env::temp_dir()
        .join("trendstream-fraud-tests")
        .join(&name);
    std::fs::create_dir_all(&dir)?;

    // The event file, as loadgen would write it; the oracle and the producer both read it.
    let file = planted(&input);
    let event_file = dir.join("events.jsonl");
    std::fs::write(&event_file, file.to_json_lines()?)?;
    let records = parse_event_file(&std::fs::read_to_string(&event_file)?)?;
    let want: Expected = expected(&records, &input, BOUND_MS, &prefix);
    println!(
        "event file {}: {} records; oracle: {} alerts, {} late, {} dead letters",
        event_file.display(),
        records.len(),
        want.alerts.len(),
        want.late.len(),
        want.dead_letters.len()
    );
    // The planted set covers what it should (guards the oracle and the planting together).
    let mut rules: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &want.alerts {
        *rules.entry(a.rule.as_str()).or_default() += 1;
    }
    assert_eq!(
        rules,
        BTreeMap::from([
            ("HIGH_VALUE_BURST", 1),
            ("HIGH_VALUE_FIRST_ORDER", 3),
            ("RAPID_ORDERS", 5),
        ]),
        "{:#?}",
        want.alerts
    );
    assert_eq!(want.late.len(), 1);
    assert_eq!(want.dead_letters.len(), 1);

    let start = |instance: &'static str| {
        start_replica(
            &env, &dir, &name, &input, &output, &dlq, &late, &prefix, instance,
        )
    };
    let mut replica0 = start("fraud-0").await?;
    let replica1 = start("fraud-1").await?;
    let outgoing: Vec<Outgoing> = records
        .iter()
        .map(|r| Outgoing {
            key: r.key.clone(),
            value: r.value.clone().into_bytes(),
            partition: Some(r.partition),
        })
        .collect();
    // Half the records, then a SIGKILL and a restart of one replica (its buffered events and
    // rule state come back from its state and changelog), then the rest: still exactly the
    // oracle's outputs.
    let (first, second) = outgoing.split_at(outgoing.len() / 2);
    produce_records(&bootstrap, &input, first)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    replica0.kill_now()?;
    let replica0 = start("fraud-0").await?;
    produce_records(&bootstrap, &input, second)?;

    let committed = read_committed(
        &bootstrap,
        &output,
        want.alerts.len(),
        Duration::from_secs(5),
        Duration::from_secs(120),
    )?;
    let mut alerts: Vec<FraudAlert> = committed
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_deref().unwrap_or_default()))
        .collect::<Result<_, _>>()?;
    for (record, alert) in committed.iter().zip(&alerts) {
        assert_eq!(
            record.key.as_deref(),
            Some(alert.user_id.as_str()),
            "keyed by user"
        );
    }
    alerts.sort_by(|a, b| a.alert_id.cmp(&b.alert_id));
    assert_eq!(alerts, want.alerts, "committed alerts equal the oracle's");

    let (dead, dead_values) = read_values(&bootstrap, &dlq, 1)?;
    assert_eq!(
        dead_values, want.dead_letters,
        "the poison pill is in the DLQ"
    );
    let headers: BTreeMap<_, _> = dead[0].headers.iter().cloned().collect();
    assert_eq!(
        headers.get("service").map(String::as_str),
        Some("fraud-detector")
    );
    assert_eq!(headers.get("source.topic"), Some(&input));

    let (_, late_values) = read_values(&bootstrap, &late, 1)?;
    assert_eq!(
        late_values, want.late,
        "the late order is on the late topic"
    );

    let (strings, sets) = redis_state(env.get("REDIS_URL")?, &prefix).await?;
    assert_eq!(
        strings, want.redis_alerts,
        "Redis alert JSON equals the oracle's"
    );
    assert_eq!(
        sets, want.redis_indexes,
        "Redis alert indexes equal the oracle's"
    );

    for mut replica in [replica0, replica1] {
        assert!(
            replica.terminate(Duration::from_secs(30))?,
            "clean exit on SIGTERM; log {}",
            replica.log.display()
        );
    }
    Ok(())
}
