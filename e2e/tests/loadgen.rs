//! loadgen against the real broker: every line of its event file is in the topic, at the
//! recorded partition, with the same key and value, in the same order per partition; the
//! summary counts agree with the file; and a dry run with the same seed writes the same file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Deserialize;
use trendstream_e2e::kafka::{create_topic, read_committed};
use trendstream_e2e::process::workspace_binary;
use trendstream_e2e::{TestEnv, unique_name};
use trendstream_events::{decode_click, decode_order};

const PARTITIONS: i32 = 4;

/// (topic, partition).
type TopicPartition = (String, i32);
/// (key, value).
type KeyValue = (String, String);
const COUNT: usize = 3_000;

/// One line of the event file (docs/processors.md).
#[derive(Debug, Deserialize)]
struct Line {
    topic: String,
    partition: i32,
    key: String,
    value: String,
}

fn read_lines(path: &Path) -> anyhow::Result<Vec<Line>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// Runs loadgen with the common flags plus `extra`; returns the summary JSON.
fn run_loadgen(
    bootstrap: &str,
    clicks: &str,
    orders: &str,
    events: &Path,
    summary: &Path,
    extra: &[&str],
) -> anyhow::Result<serde_json::Value> {
    let output = Command::new(workspace_binary("loadgen")?)
        .args(["--seed", "7", "--users", "150", "--rate", "0", "--quiet"])
        .args(["--count", &COUNT.to_string()])
        .args(["--fraud-rate", "0.05", "--poison-rate", "0.01"])
        .args(["--out-of-order-rate", "0.05", "--late-rate", "0.01"])
        .args(["--clicks-topic", clicks, "--orders-topic", orders])
        .arg("--events-file")
        .arg(events)
        .arg("--summary-file")
        .arg(summary)
        .args(extra)
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .env("RUST_LOG", "warn")
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "loadgen failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        stdout.contains("loadgen summary") && stdout.contains("poison pills"),
        "no summary printed:\n{stdout}"
    );
    Ok(serde_json::from_slice(&std::fs::read(summary)?)?)
}

fn count(summary: &serde_json::Value, path: &[&str]) -> u64 {
    path.iter()
        .fold(summary, |v, key| &v[*key])
        .as_u64()
        .unwrap_or(u64::MAX)
}

/// Every line of the file is in Kafka at its partition, with its key and value, in file order
/// per partition, and nothing else is.
async fn assert_kafka_holds(
    bootstrap: &str,
    lines: &[Line],
    clicks: &str,
    orders: &str,
) -> anyhow::Result<()> {
    // The file's records per (topic, partition), in file order.
    let mut expected: BTreeMap<TopicPartition, Vec<KeyValue>> = BTreeMap::new();
    for line in lines {
        assert!(
            line.topic == clicks || line.topic == orders,
            "{}",
            line.topic
        );
        assert!((0..PARTITIONS).contains(&line.partition));
        expected
            .entry((line.topic.clone(), line.partition))
            .or_default()
            .push((line.key.clone(), line.value.clone()));
    }

    // What the broker has, per (topic, partition), in offset order.
    let mut actual: BTreeMap<TopicPartition, Vec<(i64, KeyValue)>> = BTreeMap::new();
    for topic in [clicks, orders] {
        let want = lines.iter().filter(|l| l.topic == topic).count();
        let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
        let records = tokio::task::spawn_blocking(move || {
            read_committed(
                &bootstrap,
                &topic,
                want,
                Duration::from_secs(3),
                Duration::from_secs(90),
            )
            .map(|r| (topic, r))
        })
        .await??;
        let (topic, records) = records;
        for record in records {
            actual
                .entry((topic.clone(), record.partition))
                .or_default()
                .push((
                    record.offset,
                    (
                        record.key.unwrap_or_default(),
                        String::from_utf8(record.value.unwrap_or_default())?,
                    ),
                ));
        }
    }
    for records in actual.values_mut() {
        records.sort_by_key(|r| r.0);
    }
    let actual: BTreeMap<TopicPartition, Vec<KeyValue>> = actual
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().map(|(_, kv)| kv).collect()))
        .collect();
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "partitions with records"
    );
    for (partition, want) in &expected {
        let got = &actual[partition];
        assert_eq!(got.len(), want.len(), "record count of {partition:?}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g, w, "{partition:?} record {i}");
        }
    }

    Ok(())
}

/// Fresh topics with [`PARTITIONS`] partitions and a scratch directory.
struct Fixture {
    bootstrap: String,
    clicks: String,
    orders: String,
    dir: PathBuf,
}

impl Fixture {
    async fn new(prefix: &str) -> anyhow::Result<Self> {
        let env = TestEnv::load()?;
        let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
        let name = unique_name(prefix);
        let clicks = format!("{name}-clickstream");
        let orders = format!("{name}-orders");
        create_topic(&bootstrap, &clicks, PARTITIONS).await?;
        create_topic(&bootstrap, &orders, PARTITIONS).await?;
        let dir = std::env::temp_dir()
            .join("trendstream-loadgen-tests")
            .join(&name);
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            bootstrap,
            clicks,
            orders,
            dir,
        })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn loadgen_writes_exactly_its_event_file_to_kafka() -> anyhow::Result<()> {
    let Fixture {
        bootstrap,
        clicks,
        orders,
        dir,
    } = Fixture::new("loadgen").await?;
    let events = dir.join("events.jsonl");
    let summary_path = dir.join("summary.json");

    let summary = {
        let (bootstrap, clicks, orders) = (bootstrap.clone(), clicks.clone(), orders.clone());
        let (events, summary_path) = (events.clone(), summary_path.clone());
        tokio::task::spawn_blocking(move || {
            run_loadgen(&bootstrap, &clicks, &orders, &events, &summary_path, &[])
        })
        .await??
    };
    let lines = read_lines(&events)?;
    let watermarks = 2 * PARTITIONS as usize;
    assert_eq!(lines.len(), COUNT + watermarks, "records in the file");

    assert_kafka_holds(&bootstrap, &lines, &clicks, &orders).await?;

    // The summary agrees with the file.
    let is_clicks = |l: &&Line| l.topic == clicks;
    let undecodable = lines
        .iter()
        .filter(|l| {
            if l.topic == clicks {
                decode_click(l.value.as_bytes()).is_err()
            } else {
                decode_order(l.value.as_bytes()).is_err()
            }
        })
        .count() as u64;
    let watermark_lines = lines
        .iter()
        .filter(|l| l.key.starts_with("__watermark__"))
        .count();
    assert_eq!(watermark_lines, watermarks);
    assert!(
        lines[COUNT..]
            .iter()
            .all(|l| l.key.starts_with("__watermark__")),
        "the watermark records come last"
    );
    assert_eq!(count(&summary, &["events"]), COUNT as u64);
    assert_eq!(count(&summary, &["records"]), lines.len() as u64);
    assert_eq!(count(&summary, &["watermark_records"]), watermarks as u64);
    assert_eq!(count(&summary, &["poison", "total"]), undecodable);
    assert_eq!(
        count(&summary, &["clickstream_records"]),
        lines.iter().filter(is_clicks).count() as u64
    );
    assert_eq!(
        count(&summary, &["clicks"]) + count(&summary, &["orders"]) + undecodable,
        COUNT as u64
    );
    for field in [
        &["poison", "total"][..],
        &["late"],
        &["out_of_order"],
        &["fraud", "rapid_orders"],
        &["fraud", "high_value_first_order"],
        &["fraud", "high_value_burst"],
        &["orders_placed"],
    ] {
        let n = count(&summary, field);
        assert!(n > 0 && n != u64::MAX, "{field:?} = {n}");
    }

    // Generation does not depend on Kafka: a dry run with the same seed and partition count
    // writes a byte-identical file.
    let dry_events = dir.join("dry-events.jsonl");
    let dry_summary = dir.join("dry-summary.json");
    let partitions = PARTITIONS.to_string();
    run_loadgen(
        "127.0.0.1:1",
        &clicks,
        &orders,
        &dry_events,
        &dry_summary,
        &["--dry-run", "--partitions", &partitions],
    )?;
    assert!(
        std::fs::read(&events)? == std::fs::read(&dry_events)?,
        "dry run with the same seed wrote a different file"
    );
    Ok(())
}

#[test]
fn a_missing_topic_fails_fast_and_names_it() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?;
    let missing = unique_name("loadgen-missing");
    let output = Command::new(workspace_binary("loadgen")?)
        .args(["--count", "10", "--quiet", "--clicks-topic", &missing])
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .env("RUST_LOG", "error")
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains(&missing), "{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_an_unlimited_run_with_the_watermark_records() -> anyhow::Result<()> {
    let f = Fixture::new("loadgen-term").await?;
    let events = f.dir.join("events.jsonl");
    let summary_path = f.dir.join("summary.json");
    let child = Command::new(workspace_binary("loadgen")?)
        .args([
            "--count",
            "0",
            "--rate",
            "500",
            "--quiet",
            "--poison-rate",
            "0.01",
        ])
        .args(["--clicks-topic", &f.clicks, "--orders-topic", &f.orders])
        .arg("--events-file")
        .arg(&events)
        .arg("--summary-file")
        .arg(&summary_path)
        .env("KAFKA_BOOTSTRAP_SERVERS", &f.bootstrap)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
    anyhow::ensure!(
        output.status.success(),
        "loadgen did not exit cleanly on SIGTERM ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = read_lines(&events)?;
    let watermarks = 2 * PARTITIONS as usize;
    assert!(lines.len() > 500 + watermarks, "{} records", lines.len());
    let (body, tail) = lines.split_at(lines.len() - watermarks);
    assert!(tail.iter().all(|l| l.key.starts_with("__watermark__")));
    assert!(body.iter().all(|l| !l.key.starts_with("__watermark__")));
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary_path)?)?;
    assert_eq!(count(&summary, &["events"]), body.len() as u64);
    assert_eq!(count(&summary, &["records"]), lines.len() as u64);
    assert_kafka_holds(&f.bootstrap, &lines, &f.clicks, &f.orders).await
}
