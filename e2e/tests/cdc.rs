//! CDC end to end, against the environment's PostgreSQL (wal_level=logical) and broker:
//! pg-capture (logical replication to Debezium-compatible topics), cdc-processor (to canonical
//! orders and inventory changes) and fraud-detector (alerts from the captured orders).
//!
//! Every test works in a database, slot and topic prefix of its own, so tests share one
//! environment without seeing each other.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_postgres::{Client, NoTls};
use trendstream_e2e::kafka::{Incoming, read_committed};
use trendstream_e2e::process::{Running, free_port, workspace_binary};
use trendstream_e2e::processor::Deployment;
use trendstream_e2e::{TestEnv, unique_name};
use trendstream_events::partitioning::partition_for;
use trendstream_events::{
    FraudAlert, InventoryChange, InventoryChangeKind, OrderEvent, OrderStatus,
};

const SCHEMA_SQL: &str = include_str!("../../sql/ecommerce.sql");
/// 2026-01-01T00:00:00Z.
const T0_S: i64 = 1_767_225_600;

fn name(prefix: &str) -> String {
    unique_name(prefix).replace('-', "_").to_lowercase()
}

/// A fresh database with the example schema; returns its URL and a client.
async fn database(env: &TestEnv, prefix: &str) -> anyhow::Result<(String, Client)> {
    let (admin, connection) = tokio_postgres::connect(env.get("PG_URL")?, NoTls).await?;
    tokio::spawn(connection);
    let db = name(prefix);
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await?;
    let url = format!(
        "postgres://{}@{}:{}/{db}",
        env.get("PG_USER")?,
        env.get("PG_HOST")?,
        env.get("PG_PORT")?
    );
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
    tokio::spawn(connection);
    client.batch_execute(SCHEMA_SQL).await?;
    Ok((url, client))
}

fn log_dir(test: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join("trendstream-e2e").join(test);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

struct Capture {
    process: Running,
    port: u16,
}

/// Starts pg-capture; `wait` = wait until ready.
async fn start_capture(
    env: &TestEnv,
    url: &str,
    prefix: &str,
    slot: &str,
    dir: &std::path::Path,
    wait: bool,
    extra: &[(&str, &str)],
) -> anyhow::Result<Capture> {
    let port = free_port()?;
    let mut command = Command::new(workspace_binary("pg-capture")?);
    command
        .env("PG_URL", url)
        .env(
            "KAFKA_BOOTSTRAP_SERVERS",
            env.get("KAFKA_BOOTSTRAP_SERVERS")?,
        )
        .env("CDC_TOPIC_PREFIX", prefix)
        .env("PG_CAPTURE_SLOT", slot)
        .env("PG_CAPTURE_PARTITIONS", "3")
        .env("PG_CAPTURE_RETRY_INTERVAL", "1s")
        .env("PG_CAPTURE_POLL_INTERVAL", "50ms")
        .env("TRENDSTREAM_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info,librdkafka=warn");
    for (key, value) in extra {
        command.env(key, value);
    }
    let log = dir.join(format!("pg-capture-{}.log", unique_name("run")));
    let mut process = Running::start(command, log)?;
    if wait {
        process.wait_ready(port, Duration::from_secs(60)).await?;
    }
    Ok(Capture { process, port })
}

/// `/health/ready`: status code and body.
async fn readiness(port: u16) -> anyhow::Result<(u16, String)> {
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/health/ready"))
        .timeout(Duration::from_secs(2))
        .send()
        .await?;
    Ok((response.status().as_u16(), response.text().await?))
}

fn values(records: &[Incoming]) -> Vec<Option<Value>> {
    records
        .iter()
        .map(|r| {
            r.value
                .as_deref()
                .map(|v| serde_json::from_slice(v).expect("JSON value"))
        })
        .collect()
}

/// Drops the test's slot (it would hold WAL back forever); the capture must be stopped.
async fn drop_slot(url: &str, slot: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    client
        .execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(())
}

/// Waits until `topic` has at least `count` committed records.
fn wait_for_events(bootstrap: &str, topic: &str, count: usize) -> anyhow::Result<()> {
    let records = read_committed(
        bootstrap,
        topic,
        count,
        Duration::from_millis(200),
        Duration::from_secs(60),
    )?;
    anyhow::ensure!(
        records.len() >= count,
        "{topic}: {} of {count} records",
        records.len()
    );
    Ok(())
}

/// Test 1: inserts, a cancellation, a delete and a snapshot row, through capture,
/// cdc-processor and fraud-detector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_flow_from_postgres_to_canonical_events_and_fraud_alerts() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
    let dir = log_dir("cdc-flow")?;
    let (url, pg) = database(&env, "cdcflow").await?;
    let prefix = name("cdcflow");
    let slot = name("slot");
    let ts = |s: i64| format!("to_timestamp({})", T0_S + s);

    // In the table before the capture starts: it comes from the snapshot (op r).
    pg.batch_execute(&format!(
        "INSERT INTO orders (id, user_id, amount, created_at, updated_at) VALUES ('snap-1', 'u-snap', 10.50, {0}, {0})",
        ts(0)
    ))
    .await?;
    let mut capture = start_capture(&env, &url, &prefix, &slot, &dir, true, &[]).await?;

    let orders_topic = name("cdc_orders");
    let inventory_topic = name("cdc_inventory");
    let alerts_topic = name("cdc_alerts");
    let inputs =
        format!("{prefix}.public.orders,{prefix}.public.order_items,{prefix}.public.inventory");
    let cdc = Deployment::new("cdc-processor", &name("cdcproc"))?
        .with("KAFKA_BOOTSTRAP_SERVERS", bootstrap.clone())
        .with("KAFKA_INPUT_TOPICS", inputs)
        .with("KAFKA_OUTPUT_TOPIC", orders_topic.clone())
        .with("CDC_INVENTORY_TOPIC", inventory_topic.clone())
        .with("CDC_OUTPUT_PARTITIONS", "3")
        .with("KAFKA_DLQ_TOPIC", name("dlq_cdc"))
        .with("KAFKA_LATE_TOPIC", name("late_cdc"))
        .with("IDLE_TIMEOUT", "24h");
    let _cdc = cdc.start("cdc-0").await?;
    let fraud = Deployment::new("fraud-detector", &name("fraud"))?
        .with("KAFKA_BOOTSTRAP_SERVERS", bootstrap.clone())
        .with("KAFKA_INPUT_TOPICS", orders_topic.clone())
        .with("KAFKA_OUTPUT_TOPIC", alerts_topic.clone())
        .with("KAFKA_DLQ_TOPIC", name("dlq_fraud"))
        .with("KAFKA_LATE_TOPIC", name("late_fraud"))
        .with("REDIS_URL", env.get("REDIS_URL")?)
        .with("REDIS_KEY_PREFIX", name("cdcfraud"))
        .with("IDLE_TIMEOUT", "24h");
    let _fraud = fraud.start("fraud-0").await?;

    let order = |id: &str, user: &str, amount: &str, at: i64| {
        format!(
            "INSERT INTO orders (id, user_id, amount, created_at, updated_at) VALUES ('{id}', '{user}', {amount}, {0}, {0});",
            ts(at)
        )
    };
    // Three orders in two minutes: RAPID_ORDERS. Different orders come from different input
    // partitions (the change topics are keyed by order id), so cdc-processor may emit them in
    // another relative order than their commits; these three carry event times a minute apart
    // (beyond the 30 s out-of-orderness) but are written within milliseconds, so each is let
    // through before the next, as orders placed a minute apart would be. Later changes carry
    // later event times too (a delete: the wall-clock commit time): the burst (and the snapshot
    // row) goes through first.
    for (seen, (id, at)) in [("f-1", 0), ("f-2", 60), ("f-3", 120)]
        .into_iter()
        .enumerate()
    {
        pg.batch_execute(&order(id, "u-fraud", "100.00", at))
            .await?;
        wait_for_events(&bootstrap, &orders_topic, seen + 2)?;
    }
    // Placed, then cancelled.
    pg.batch_execute(&order("c-1", "u-cancel", "250.00", 0))
        .await?;
    pg.batch_execute(&format!(
        "UPDATE orders SET status = 'cancelled', updated_at = {} WHERE id = 'c-1'",
        ts(60)
    ))
    .await?;
    // Placed, then deleted: a cancellation.
    pg.batch_execute(&order("d-1", "u-delete", "75.00", 0))
        .await?;
    pg.batch_execute("DELETE FROM orders WHERE id = 'd-1'")
        .await?;
    // An update that is not a status change: no event.
    pg.batch_execute(&order("p-1", "u-plain", "20.00", 0))
        .await?;
    pg.batch_execute(&format!(
        "UPDATE orders SET amount = 21.00, updated_at = {} WHERE id = 'p-1'",
        ts(30)
    ))
    .await?;
    // A line item (checked, not emitted) and stock changes.
    pg.batch_execute("INSERT INTO order_items VALUES ('p-1', 1, 'prod-1', 'books', 2, 10.50)")
        .await?;
    pg.batch_execute(&format!(
        "INSERT INTO inventory VALUES ('sku-1', 10, {})",
        ts(0)
    ))
    .await?;
    pg.batch_execute(&format!(
        "UPDATE inventory SET quantity = 7, updated_at = {} WHERE sku = 'sku-1'",
        ts(10)
    ))
    .await?;
    pg.batch_execute("DELETE FROM inventory WHERE sku = 'sku-1'")
        .await?;
    wait_for_events(&bootstrap, &orders_topic, 9)?;
    // A day later: moves u-fraud's partition's watermark past the burst so it is evaluated.
    pg.batch_execute(&order("f-4", "u-fraud", "1.00", 86_400))
        .await?;

    // Canonical orders: per order, its statuses in order; every record on its key's partition.
    let records = read_committed(
        &bootstrap,
        &orders_topic,
        10,
        Duration::from_secs(3),
        Duration::from_secs(60),
    )?;
    let mut by_order: BTreeMap<String, Vec<OrderStatus>> = BTreeMap::new();
    let mut sorted = records.clone();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    for record in &sorted {
        let event: OrderEvent =
            serde_json::from_slice(record.value.as_deref().unwrap_or_default())?;
        assert_eq!(
            record.key.as_deref(),
            Some(event.user_id.as_str()),
            "keyed by user"
        );
        assert_eq!(
            record.partition,
            partition_for(event.user_id.as_bytes(), 3),
            "key's partition"
        );
        by_order
            .entry(event.order_id.clone())
            .or_default()
            .push(event.status);
        if event.order_id == "c-1" && event.status == OrderStatus::Cancelled {
            assert_eq!(event.amount.to_string(), "250.00");
            assert_eq!(event.ts, (T0_S + 60) * 1000);
        }
    }
    use OrderStatus::{Cancelled, Placed};
    let expected: BTreeMap<String, Vec<OrderStatus>> = [
        ("snap-1", vec![Placed]),
        ("f-1", vec![Placed]),
        ("f-2", vec![Placed]),
        ("f-3", vec![Placed]),
        ("f-4", vec![Placed]),
        ("c-1", vec![Placed, Cancelled]),
        ("d-1", vec![Placed, Cancelled]),
        ("p-1", vec![Placed]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(by_order, expected, "canonical order events");

    let inventory = read_committed(
        &bootstrap,
        &inventory_topic,
        3,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )?;
    let changes: Vec<(InventoryChangeKind, i64, Option<i64>)> = inventory
        .iter()
        .map(|r| {
            let c: InventoryChange = serde_json::from_slice(r.value.as_deref().unwrap_or_default())
                .expect("inventory change");
            (c.change, c.quantity, c.previous_quantity)
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            (InventoryChangeKind::Created, 10, None),
            (InventoryChangeKind::Updated, 7, Some(10)),
            (InventoryChangeKind::Deleted, 0, Some(7)),
        ]
    );

    // The raw capture topic: a delete is followed by a tombstone, as Debezium does.
    let raw = read_committed(
        &bootstrap,
        &format!("{prefix}.public.orders"),
        12,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )?;
    let mut raw_sorted = raw.clone();
    raw_sorted.sort_by_key(|r| (r.partition, r.offset));
    let ops: Vec<String> = values(&raw_sorted)
        .iter()
        .zip(&raw_sorted)
        .filter(|(_, r)| r.key.as_deref().is_some_and(|k| k.contains("\"d-1\"")))
        .map(|(v, _)| {
            v.as_ref().map_or("tombstone".to_owned(), |v| {
                v["payload"]["op"].as_str().unwrap_or("?").to_owned()
            })
        })
        .collect();
    assert_eq!(ops, vec!["c", "d", "tombstone"]);

    let alerts = read_committed(
        &bootstrap,
        &alerts_topic,
        1,
        Duration::from_secs(3),
        Duration::from_secs(60),
    )?;
    let alerts: Vec<FraudAlert> = alerts
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_deref().unwrap_or_default()).expect("alert"))
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].rule, "RAPID_ORDERS");
    assert_eq!(alerts[0].user_id, "u-fraud");
    assert_eq!(alerts[0].order_ids, vec!["f-1", "f-2", "f-3"]);
    capture.process.kill_now()?;
    drop_slot(&url, &slot).await
}

/// Test 2: SIGKILL the capture twice during a 50 000-row load; every committed row change is
/// in the change topic exactly once, and in the canonical orders once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_capture_loses_and_repeats_nothing() -> anyhow::Result<()> {
    const ROWS: i64 = 50_000;
    const PER_TX: i64 = 100;
    let env = TestEnv::load()?;
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
    let dir = log_dir("cdc-kill")?;
    let (url, pg) = database(&env, "cdckill").await?;
    let prefix = name("cdckill");
    let slot = name("slot");
    let mut capture = start_capture(&env, &url, &prefix, &slot, &dir, true, &[]).await?;

    // The load: 500 transactions of 100 inserts; every 10th order then cancelled, every 50th
    // deleted, in transactions of their own.
    let writer = tokio::spawn(async move {
        for batch in 0..ROWS / PER_TX {
            let first = batch * PER_TX;
            pg.batch_execute(&format!(
                "INSERT INTO orders (id, user_id, amount, created_at, updated_at) \
                 SELECT 'k-' || n, 'u-' || (n % 977), 10.00 + (n % 100), to_timestamp({T0_S} + n), to_timestamp({T0_S} + n) \
                 FROM generate_series({first}, {}) AS n",
                first + PER_TX - 1
            ))
            .await?;
            pg.batch_execute(&format!(
                "UPDATE orders SET status = 'cancelled', updated_at = updated_at + interval '1 second' \
                 WHERE id IN (SELECT 'k-' || n FROM generate_series({first}, {}) AS n WHERE n % 10 = 0)",
                first + PER_TX - 1
            ))
            .await?;
            pg.batch_execute(&format!(
                "DELETE FROM orders WHERE id IN (SELECT 'k-' || n FROM generate_series({first}, {}) AS n WHERE n % 50 = 1)",
                first + PER_TX - 1
            ))
            .await?;
            // Spread the load over ~20 s, so the kills land while it is still being written.
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        anyhow::Ok(())
    });

    // Kill while it is streaming: once it has written 10 000 records, and again 25 000 after the restart (the
    // counter is per process, so the second threshold counts from the restart).
    let started = Instant::now();
    for (kill, threshold) in [10_000u64, 25_000].into_iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            capture.process.check_alive()?;
            if records_written(capture.port).await.unwrap_or(0) >= threshold {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "capture made no progress");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        capture.process.kill_now()?;
        println!(
            "capture SIGKILLed ({}) after {threshold} records, {:?} into the load, writer finished: {}",
            kill + 1,
            started.elapsed(),
            writer.is_finished()
        );
        capture = start_capture(&env, &url, &prefix, &slot, &dir, false, &[]).await?;
    }
    writer.await??;
    capture
        .process
        .wait_ready(capture.port, Duration::from_secs(60))
        .await?;

    let updates = ROWS / 10;
    let deletes = ROWS / 50;
    // Each delete is a `d` and a tombstone.
    let expected = (ROWS + updates + 2 * deletes) as usize;
    let raw = read_committed(
        &bootstrap,
        &format!("{prefix}.public.orders"),
        expected,
        Duration::from_secs(5),
        Duration::from_secs(240),
    )?;
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for (value, record) in values(&raw).iter().zip(&raw) {
        let key = record.key.clone().unwrap_or_default();
        let op = value.as_ref().map_or("tombstone".to_owned(), |v| {
            v["payload"]["op"].as_str().unwrap_or("?").to_owned()
        });
        *seen.entry((key, op)).or_default() += 1;
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        duplicates.is_empty(),
        "changes captured more than once: {duplicates:?}"
    );
    let count = |op: &str| seen.keys().filter(|(_, o)| o == op).count() as i64;
    assert_eq!(
        (
            count("c"),
            count("u"),
            count("d"),
            count("tombstone"),
            count("r")
        ),
        (ROWS, updates, deletes, deletes, 0),
        "every committed change exactly once ({} records)",
        raw.len()
    );
    assert_eq!(raw.len(), expected);

    // Downstream: cdc-processor turns them into canonical events, each once.
    let orders_topic = name("kill_orders");
    let cdc = Deployment::new("cdc-processor", &name("cdckillproc"))?
        .with("KAFKA_BOOTSTRAP_SERVERS", bootstrap.clone())
        .with("KAFKA_INPUT_TOPICS", format!("{prefix}.public.orders"))
        .with("KAFKA_OUTPUT_TOPIC", orders_topic.clone())
        .with("CDC_INVENTORY_TOPIC", name("kill_inventory"))
        .with("KAFKA_DLQ_TOPIC", name("kill_dlq"))
        .with("KAFKA_LATE_TOPIC", name("kill_late"))
        .with("IDLE_TIMEOUT", "24h");
    let _cdc = cdc.start("cdc-0").await?;
    // Placed per row; cancelled per update; a delete of a placed order cancels it (the
    // deleted rows n % 50 = 1 are never the updated ones n % 10 = 0).
    let canonical = (ROWS + updates + deletes) as usize;
    let events = read_committed(
        &bootstrap,
        &orders_topic,
        canonical,
        Duration::from_secs(5),
        Duration::from_secs(240),
    )?;
    let mut ids: HashMap<String, usize> = HashMap::new();
    for record in &events {
        let event: OrderEvent =
            serde_json::from_slice(record.value.as_deref().unwrap_or_default())?;
        *ids.entry(event.event_id).or_default() += 1;
    }
    assert_eq!(events.len(), canonical);
    assert!(ids.values().all(|n| *n == 1), "duplicate canonical events");
    capture.process.kill_now()?;
    drop_slot(&url, &slot).await
}

/// The crash window itself, made deterministic with the capture's test hook: the first batch is
/// committed to Kafka and the process aborts before acknowledging it to PostgreSQL. The restarted
/// capture reads the position back from Kafka and does not write the batch again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_kafka_commit_and_acknowledgement_repeats_nothing() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
    let dir = log_dir("cdc-window")?;
    let (url, pg) = database(&env, "cdcwindow").await?;
    let prefix = name("cdcwindow");
    let slot = name("slot");
    let abort = [("PG_CAPTURE_TEST_ABORT_BEFORE_ACK", "1")];
    let mut capture = start_capture(&env, &url, &prefix, &slot, &dir, true, &abort).await?;
    pg.batch_execute(
        "INSERT INTO orders (id, user_id, amount) SELECT 'w-' || n, 'u-' || n, 5.00 FROM generate_series(1, 200) AS n;
         UPDATE orders SET status = 'paid' WHERE id = 'w-7';"
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while capture.process.check_alive().is_ok() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the test hook did not abort the capture"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let topic = format!("{prefix}.public.orders");
    let before = read_committed(
        &bootstrap,
        &topic,
        201,
        Duration::from_secs(1),
        Duration::from_secs(30),
    )?;
    assert_eq!(
        before.len(),
        201,
        "the batch was committed to Kafka before the abort"
    );

    // The window: Kafka has the batch and its position, PostgreSQL was not told.
    let offsets = read_committed(
        &bootstrap,
        &format!("{prefix}.pg-capture-offsets"),
        2,
        Duration::from_secs(1),
        Duration::from_secs(30),
    )?;
    let stored: Value = serde_json::from_slice(
        offsets
            .last()
            .and_then(|r| r.value.as_deref())
            .unwrap_or_default(),
    )?;
    let stored = stored["lsn"].as_str().unwrap_or_default().to_owned();
    let behind: bool = pg
        .query_one(
            "SELECT confirmed_flush_lsn < $2::text::pg_lsn FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot, &stored],
        )
        .await?
        .get(0);
    assert!(
        behind,
        "the slot was not acknowledged up to the committed position {stored}"
    );

    let mut capture = start_capture(&env, &url, &prefix, &slot, &dir, true, &[]).await?;
    pg.batch_execute("INSERT INTO orders (id, user_id, amount) VALUES ('w-last', 'u-last', 1.00)")
        .await?;
    let after = read_committed(
        &bootstrap,
        &topic,
        202,
        Duration::from_secs(3),
        Duration::from_secs(60),
    )?;
    let mut seen: HashMap<(Option<String>, String), usize> = HashMap::new();
    for (value, record) in values(&after).iter().zip(&after) {
        let op = value.as_ref().map_or("tombstone".to_owned(), |v| {
            v["payload"]["op"].as_str().unwrap_or("?").to_owned()
        });
        *seen.entry((record.key.clone(), op)).or_default() += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "a change was written twice");
    assert_eq!(after.len(), 202, "200 inserts, 1 update, the last insert");
    capture.process.kill_now()?;
    drop_slot(&url, &slot).await
}

/// `trendstream_pg_capture_records_total` of a running capture.
async fn records_written(port: u16) -> anyhow::Result<u64> {
    let text = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .timeout(Duration::from_secs(2))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("trendstream_pg_capture_records_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64))
}

/// Waits until `/health/ready` is 503 with a reason containing `needle`.
async fn wait_not_ready(capture: &mut Capture, needle: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        capture.process.check_alive()?;
        // Not listening yet (a capture just started) reads as not ready without a reason.
        let (status, body) = readiness(capture.port)
            .await
            .unwrap_or_else(|err| (0, err.to_string()));
        if status == 503 && body.contains(needle) {
            return Ok(body);
        }
        anyhow::ensure!(Instant::now() < deadline, "still {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Test 4: a dropped publication, then a dropped slot: clear errors, not ready, no exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_publication_or_slot_is_a_clear_not_ready_error() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
    let dir = log_dir("cdc-drop")?;
    let (url, pg) = database(&env, "cdcdrop").await?;
    let prefix = name("cdcdrop");
    let slot = name("slot");
    let mut capture = start_capture(&env, &url, &prefix, &slot, &dir, true, &[]).await?;
    pg.batch_execute("INSERT INTO orders (id, user_id, amount) VALUES ('x-1', 'u-1', 1.00)")
        .await?;
    let raw = read_committed(
        &bootstrap,
        &format!("{prefix}.public.orders"),
        1,
        Duration::from_secs(1),
        Duration::from_secs(30),
    )?;
    assert_eq!(raw.len(), 1);

    pg.batch_execute("DROP PUBLICATION trendstream_cdc").await?;
    let body = wait_not_ready(&mut capture, "publication").await?;
    println!("after DROP PUBLICATION: {body}");
    assert!(body.contains("does not exist"), "{body}");
    // It stays up and keeps saying so (no crash loop).
    tokio::time::sleep(Duration::from_secs(3)).await;
    capture.process.check_alive()?;
    let log = std::fs::read_to_string(&capture.process.log)?;
    assert!(
        log.contains("publication \\\"trendstream_cdc\\\" does not exist")
            || log.contains("publication \"trendstream_cdc\" does not exist"),
        "log names the publication"
    );

    // Recreated, the capture resumes by itself.
    pg.batch_execute(
        "CREATE PUBLICATION trendstream_cdc FOR TABLE orders, order_items, inventory, users",
    )
    .await?;
    capture
        .process
        .wait_ready(capture.port, Duration::from_secs(30))
        .await?;

    // The slot is only in use during a peek; retry the drop until it is free.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match pg
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await
        {
            Ok(_) => break,
            Err(err) if Instant::now() < deadline => {
                println!("slot busy: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
    let body = wait_not_ready(&mut capture, "replication slot").await?;
    println!("after dropping the slot: {body}");
    assert!(body.contains("does not exist"), "{body}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    capture.process.check_alive()?;
    let log = std::fs::read_to_string(&capture.process.log)?;
    assert!(
        log.contains("capture failed") && log.contains(&slot),
        "log names the slot"
    );
    Ok(())
}

/// loadgen `--orders-sink postgres`: the generated orders land in the tables (each order with
/// the status of its last event, placed orders with their lines), and none in the orders topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_writes_its_orders_into_postgres() -> anyhow::Result<()> {
    use trendstream_e2e::kafka::create_topic;
    let env = TestEnv::load()?;
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
    let dir = log_dir("cdc-loadgen")?;
    let (url, pg) = database(&env, "cdcloadgen").await?;
    let clicks = name("lg_clicks");
    let orders = name("lg_orders");
    create_topic(&bootstrap, &clicks, 3).await?;
    create_topic(&bootstrap, &orders, 3).await?;
    let events = dir.join(format!("{}.jsonl", name("events")));
    let output = Command::new(workspace_binary("loadgen")?)
        .args([
            "--seed", "11", "--users", "50", "--rate", "0", "--quiet", "--count", "3000",
        ])
        .args(["--fraud-rate", "0.05", "--bootstrap-servers", &bootstrap])
        .args(["--clicks-topic", &clicks, "--orders-topic", &orders])
        .args(["--orders-sink", "postgres", "--postgres-url", &url])
        .arg("--events-file")
        .arg(&events)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "loadgen failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The last status of every order, in the order loadgen wrote them.
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for line in std::fs::read_to_string(&events)?.lines() {
        let record: Value = serde_json::from_str(line)?;
        if record["topic"] != orders.as_str() {
            continue;
        }
        let event: OrderEvent = serde_json::from_str(record["value"].as_str().unwrap_or_default())?;
        if event.user_id.starts_with("__watermark__") {
            continue;
        }
        expected.insert(event.order_id, event.status.as_str().to_owned());
    }
    anyhow::ensure!(!expected.is_empty(), "the load has no orders");
    let rows = pg.query("SELECT id, status FROM orders", &[]).await?;
    let actual: BTreeMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(actual, expected);
    let lines: i64 = pg
        .query_one("SELECT count(*) FROM order_items", &[])
        .await?
        .get(0);
    assert!(lines > 0, "order lines written");
    let in_kafka = read_committed(
        &bootstrap,
        &orders,
        0,
        Duration::from_secs(2),
        Duration::from_secs(10),
    )?;
    assert!(in_kafka.is_empty(), "orders went to Kafka too");
    Ok(())
}

/// Test 6: PostgreSQL over TLS. loadgen writes with `sslmode=require`, pg-capture reads with
/// `sslmode=verify-full` against the environment's CA; PostgreSQL reports both connections as
/// encrypted (`pg_stat_ssl`); with a CA that did not sign the server's certificate, pg-capture is
/// not ready and says why instead of connecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_and_pg_capture_speak_tls_and_verify_the_server() -> anyhow::Result<()> {
    use trendstream_e2e::kafka::create_topic;
    let env = TestEnv::load()?;
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
    let ca = env.get("PG_CA_CERT")?.to_owned();
    let dir = log_dir("cdc-tls")?;
    let (url, pg) = database(&env, "cdctls").await?;
    let prefix = name("tls");
    let slot = name("tls_slot");
    let verified = format!("{url}?sslmode=verify-full&sslrootcert={ca}");
    let mut capture = start_capture(&env, &verified, &prefix, &slot, &dir, true, &[]).await?;

    let clicks = name("tls_clicks");
    let orders = name("tls_orders");
    create_topic(&bootstrap, &clicks, 1).await?;
    create_topic(&bootstrap, &orders, 1).await?;
    let output = Command::new(workspace_binary("loadgen")?)
        .args(["--seed", "5", "--users", "20", "--rate", "0", "--quiet"])
        .args(["--count", "400", "--bootstrap-servers", &bootstrap])
        .args(["--clicks-topic", &clicks, "--orders-topic", &orders])
        .args(["--orders-sink", "postgres"])
        .args(["--postgres-url", &format!("{url}?sslmode=require")])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "loadgen over TLS failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let order_rows: i64 = pg
        .query_one("SELECT count(*) FROM orders", &[])
        .await?
        .get(0);
    anyhow::ensure!(order_rows > 0, "loadgen wrote no orders");
    // Every order was inserted once at least: as many change events at least.
    wait_for_events(
        &bootstrap,
        &format!("{prefix}.public.orders"),
        order_rows as usize,
    )?;
    let sessions = pg
        .query(
            "SELECT a.application_name, s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()",
            &[],
        )
        .await?;
    let capture_ssl: Vec<bool> = sessions
        .iter()
        .filter(|row| row.get::<_, Option<String>>(0).as_deref() == Some("pg-capture"))
        .map(|row| row.get(1))
        .collect();
    anyhow::ensure!(
        !capture_ssl.is_empty() && capture_ssl.iter().all(|ssl| *ssl),
        "pg-capture's sessions encrypted: {capture_ssl:?}"
    );
    let own_ssl: bool = pg
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?
        .get(0);
    anyhow::ensure!(!own_ssl, "the test's own plain connection reads as plain");
    capture.process.terminate(Duration::from_secs(20))?;
    drop_slot(&url, &slot).await?;

    // A CA of another's: the server's certificate does not chain to it.
    let other = dir.join(format!("{}-other-ca", name("ca")));
    std::fs::create_dir_all(&other)?;
    let status = Command::new("openssl")
        .current_dir(&other)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=not-the-servers-ca",
        ])
        .output()?
        .status;
    anyhow::ensure!(status.success(), "openssl");
    let wrong = format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        other.join("ca.crt").display()
    );
    let mut refused = start_capture(&env, &wrong, &prefix, &slot, &dir, false, &[]).await?;
    let reason = wait_not_ready(&mut refused, "certificate").await?;
    assert!(
        reason.contains("sslmode=verify-full") && reason.contains("UnknownIssuer"),
        "{reason}"
    );
    refused.process.kill_now()?;
    Ok(())
}
