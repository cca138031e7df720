//! The streaming runtime against the real broker, Redis, GCS emulator and Prometheus, driven
//! through its example processor (`trendstream-example-counter`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use trendstream_e2e::counter::{
    assert_exact_counts, assert_redis_counts, counted_records, counter_job,
};
use trendstream_e2e::kafka::{Outgoing, create_topic, produce_records};
use trendstream_e2e::{TestEnv, unique_name};

async fn create_bucket(env: &TestEnv, bucket: &str) -> anyhow::Result<()> {
    trendstream_e2e::gcs::create_bucket(env.get("GCS_ENDPOINT")?, bucket).await
}

async fn list_objects(env: &TestEnv, bucket: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
    let endpoint = env.get("GCS_ENDPOINT")?;
    let listing: serde_json::Value = reqwest::Client::new()
        .get(format!("{endpoint}/storage/v1/b/{bucket}/o"))
        .query(&[("prefix", prefix)])
        .send()
        .await?
        .json()
        .await?;
    Ok(listing["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// A small deterministic generator, so a failing run can be repeated from its printed seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// 9999-12-31T23:59:59Z in ms.
const YEAR_9999: i64 = 253_402_300_799_000;

fn log_contains(path: &Path, needle: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|log| log.contains(needle))
}

#[tokio::test(flavor = "multi_thread")]
async fn exactly_once_under_sigkill() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let redis_url = env.get("REDIS_URL")?.to_owned();
    let job = counter_job(&env, "eos", 6)
        .await?
        .with("REDIS_URL", redis_url.clone());
    let (records, expected) = counted_records(&job.name, 200_000, 1_000);
    produce_records(&job.bootstrap, &job.input, &records)?;

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64
        | 1;
    println!("kill schedule seed {seed}");
    let mut rng = XorShift(seed);
    let mut replica = job.start("replica-0").await?;
    for kill in 1..=5 {
        let wait = 200 + rng.next() % 1_500;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        replica.process.check_alive()?;
        let processed = replica.metric("trendstream_records_in_total").await;
        replica.process.kill_now()?;
        println!("kill {kill}: SIGKILL after {wait} ms, this life had read {processed} records");
        replica = job.start("replica-0").await?;
    }
    let output = job.read(&job.output, records.len(), Duration::from_secs(240))?;
    assert_exact_counts(&output, &expected)?;
    assert_redis_counts(&redis_url, &expected).await?;
    assert!(
        replica.process.terminate(Duration::from_secs(30))?,
        "clean exit on SIGTERM"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partition_moves_with_its_state_through_gcs() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let bucket = unique_name("ckpt");
    create_bucket(&env, &bucket).await?;
    let job = counter_job(&env, "move", 6)
        .await?
        .with("GCS_BUCKET", bucket.clone())
        .with("GCS_ENDPOINT", env.get("GCS_ENDPOINT")?)
        .with("CHECKPOINT_INTERVAL", "1s");
    let (records, expected) = counted_records(&job.name, 60_000, 300);
    let (first, second) = records.split_at(30_000);
    let mut replica0 = job.start("replica-0").await?;
    let replica1 = job.start("replica-1").await?;
    produce_records(&job.bootstrap, &job.input, first)?;
    job.read(&job.output, first.len(), Duration::from_secs(120))?;
    // Let a checkpoint of the processed state reach GCS.
    let deadline = Instant::now() + Duration::from_secs(30);
    while list_objects(&env, &bucket, "checkpoints/")
        .await?
        .iter()
        .filter(|o| o.contains("/manifests/"))
        .count()
        < 2
    {
        anyhow::ensure!(Instant::now() < deadline, "no checkpoint manifests in GCS");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    replica0.process.kill_now()?;
    std::fs::remove_dir_all(job.state_dir("replica-0"))?;
    produce_records(&job.bootstrap, &job.input, second)?;
    // Same pod name (a StatefulSet pod rescheduled onto a new, empty volume).
    let replica0 = job.start("replica-0").await?;
    let output = job.read(&job.output, records.len(), Duration::from_secs(180))?;
    assert_exact_counts(&output, &expected)?;
    assert!(
        log_contains(&replica0.process.log, "state restored from GCS"),
        "the new replica restored from GCS; see {}",
        replica0.process.log.display()
    );
    // Restoring reads each changelog to its end: expected, not an error.
    for replica in [&replica0, &replica1] {
        let errors = replica.process.error_lines();
        assert!(
            errors.is_empty(),
            "ERROR lines in {}: {errors:#?}",
            replica.process.log.display()
        );
    }
    drop(replica1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn event_time_windows_lateness_idle_partitions_and_a_clock_gone_wrong() -> anyhow::Result<()>
{
    let env = TestEnv::load()?;
    let job = counter_job(&env, "windows", 2)
        .await?
        .with("COUNTER_MODE", "window")
        .with("WINDOW_SIZE", "10s")
        .with("MAX_OUT_OF_ORDERNESS", "5s")
        .with("ALLOWED_LATENESS", "2s")
        .with("IDLE_TIMEOUT", "2s");
    let at = |key: &str, partition: i32, ts: i64| Outgoing {
        key: Some(key.to_owned()),
        value: format!("{{\"ts\":{ts}}}").into_bytes(),
        partition: Some(partition),
    };
    let replica = job.start("replica-0").await?;
    // Partition 1: one record for "b", then silence: it is idle when partition 0's records come.
    produce_records(&job.bootstrap, &job.input, &[at("b", 1, 1_000)])?;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    // Partition 0, in arrival order, with the watermark (max - 5 s - 1 ms) after each:
    let arrivals = [
        at("a", 0, 1_000), // wm -4001
        at("a", 0, 3_000), // wm -2001
        // A producer's clock gone wrong: beyond MAX_FUTURE_SKEW, dead-lettered, wm unchanged.
        at("a", 0, YEAR_9999),
        at("a", 0, 12_000), // wm 6999 (12 s belongs to [10 s, 20 s))
        at("a", 0, 2_000),  // out of order within the bound: counted in [0, 10 s)
        at("a", 0, 16_000), // wm 10999: [0, 10 s) fires with 3
        at("a", 0, 9_000),  // late but within lateness (cleanup at 11999): fires again with 4
        at("a", 0, 18_000), // wm 12999: [0, 10 s) is cleaned up
        at("a", 0, 5_000),  // beyond bound + lateness: late topic
    ];
    produce_records(&job.bootstrap, &job.input, &arrivals)?;
    let output = job.read(&job.output, 3, Duration::from_secs(60))?;
    let mut results: Vec<(String, i64, i64, u64)> = output
        .iter()
        .map(|r| {
            let v: serde_json::Value =
                serde_json::from_slice(r.value.as_deref().unwrap_or_default()).unwrap_or_default();
            (
                v["key"].as_str().unwrap_or_default().to_owned(),
                v["start"].as_i64().unwrap_or(-1),
                v["end"].as_i64().unwrap_or(-1),
                v["count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    results.sort();
    assert_eq!(
        results,
        vec![
            ("a".to_owned(), 0, 10_000, 3),
            ("a".to_owned(), 0, 10_000, 4),
            // Partition 1 went idle and followed partition 0's watermark, so its window closed.
            ("b".to_owned(), 0, 10_000, 1),
        ]
    );
    let dead = job.read(&job.dlq, 1, Duration::from_secs(30))?;
    assert_eq!(dead.len(), 1, "exactly one dead letter: {dead:?}");
    let headers: BTreeMap<_, _> = dead[0].headers.iter().cloned().collect();
    assert!(
        headers
            .get("error")
            .is_some_and(|e| e.contains("ahead of the wall clock, more than MAX_FUTURE_SKEW")),
        "{headers:?}"
    );
    let late = job.read(&job.late, 1, Duration::from_secs(30))?;
    assert_eq!(late.len(), 1, "exactly one late record: {late:?}");
    assert_eq!(late[0].value.as_deref(), Some(&b"{\"ts\":5000}"[..]));
    let headers: BTreeMap<_, _> = late[0].headers.iter().cloned().collect();
    assert_eq!(headers.get("source.topic"), Some(&job.input));
    assert!(
        headers.get("error").is_some_and(|e| e.contains("closed")),
        "{headers:?}"
    );
    drop(replica);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_records_go_to_the_dlq_and_prometheus_scrapes_the_metrics() -> anyhow::Result<()>
{
    let env = TestEnv::load()?;
    let bucket = unique_name("ckpt");
    create_bucket(&env, &bucket).await?;
    let job = counter_job(&env, "dlq", 3)
        .await?
        .with("GCS_BUCKET", bucket)
        .with("GCS_ENDPOINT", env.get("GCS_ENDPOINT")?)
        .with("CHECKPOINT_INTERVAL", "1s");
    let (mut records, _) = counted_records(&job.name, 10_000, 50);
    // 1% poison: every 100th record is not JSON, or has no key.
    let mut poison = 0;
    for (i, record) in records.iter_mut().enumerate() {
        if i % 100 == 7 {
            poison += 1;
            if i % 200 == 7 {
                record.value = b"{not json".to_vec();
            } else {
                record.key = None;
            }
        }
    }
    let replica = job.start("replica-0").await?;
    produce_records(&job.bootstrap, &job.input, &records)?;
    let output = job.read(
        &job.output,
        records.len() - poison,
        Duration::from_secs(120),
    )?;
    assert_eq!(
        output.len(),
        records.len() - poison,
        "every good record counted once"
    );
    let dead = job.read(&job.dlq, poison, Duration::from_secs(30))?;
    assert_eq!(dead.len(), poison, "exactly the poison records in the DLQ");
    for record in &dead {
        let headers: BTreeMap<_, _> = record.headers.iter().cloned().collect();
        for name in [
            "error",
            "source.topic",
            "source.partition",
            "source.offset",
            "service",
            "timestamp",
        ] {
            assert!(
                headers.contains_key(name),
                "header {name} missing: {headers:?}"
            );
        }
        assert_eq!(headers["service"], "example-counter");
        assert_eq!(headers["source.topic"], job.input);
    }

    // The metrics endpoint passes promtool and carries what DESIGN.md promises.
    let address = format!("127.0.0.1:{}", replica.port);
    let body = reqwest::get(format!("http://{address}/metrics"))
        .await?
        .text()
        .await?;
    let promtool = env.get("PROMTOOL")?;
    let (status, report) = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_input(body.as_bytes())?;
    assert!(status.success(), "promtool check metrics: {report}");
    for name in [
        "trendstream_consumer_lag",
        "trendstream_records_in_total",
        "trendstream_records_out_total",
        "trendstream_checkpoint_seconds_bucket",
        "trendstream_dlq_records_total",
        "trendstream_watermark_delay_seconds",
        "trendstream_processing_seconds_bucket",
    ] {
        assert!(body.contains(name), "{name} missing from /metrics");
    }

    let _target = trendstream_e2e::prometheus::Target::register(
        env.get("PROMETHEUS_TARGETS_DIR")?,
        &job.name,
        &address,
        serde_json::json!({ "job_run": job.name }),
    )?;
    let query = format!("trendstream_dlq_records_total{{job_run=\"{}\"}}", job.name);
    let expected = poison.to_string();
    let (value, last) = trendstream_e2e::prometheus::query_until(
        env.get("PROMETHEUS_URL")?,
        &query,
        Duration::from_secs(60),
        |v| v == expected,
    )
    .await?;
    assert_eq!(
        value.as_deref(),
        Some(expected.as_str()),
        "{query}; last answer {last}"
    );
    drop(replica);
    Ok(())
}

/// `Command::output` with bytes on stdin.
trait OutputWithInput {
    fn output_with_input(
        &mut self,
        input: &[u8],
    ) -> anyhow::Result<(std::process::ExitStatus, String)>;
}

impl OutputWithInput for Command {
    fn output_with_input(
        &mut self,
        input: &[u8],
    ) -> anyhow::Result<(std::process::ExitStatus, String)> {
        use std::io::Write;
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input)?;
        }
        let output = child.wait_with_output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok((output.status, text))
    }
}

/// State is kept per partition number: inputs with different partition counts, or a changelog
/// left from before the input was given more partitions, would put state where no task reads
/// it. The replica refuses to start and says which topics differ.
#[tokio::test(flavor = "multi_thread")]
async fn topics_that_are_not_co_partitioned_are_refused_at_start() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
    let name = unique_name("copart");
    let (narrow, wide) = (format!("{name}-a"), format!("{name}-b"));
    create_topic(&bootstrap, &narrow, 2).await?;
    create_topic(&bootstrap, &wide, 4).await?;
    // A changelog made when the input had 2 partitions; the input now has 4.
    let stale_group = format!("{name}-grown");
    create_topic(&bootstrap, &format!("{stale_group}-counts-changelog"), 2).await?;

    let binary = trendstream_e2e::process::workspace_binary("trendstream-example-counter")?;
    let cases = [
        (
            &name,
            format!("{narrow},{wide}"),
            format!("{narrow}: 2, {wide}: 4"),
        ),
        (
            &stale_group,
            wide.clone(),
            format!("{stale_group}-counts-changelog: 2"),
        ),
    ];
    for (group, inputs, expected) in cases {
        let output = Command::new(&binary)
            .env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
            .env("KAFKA_INPUT_TOPICS", &inputs)
            .env("KAFKA_OUTPUT_TOPIC", format!("{name}-out"))
            .env("KAFKA_CONSUMER_GROUP", group)
            .env("POD_NAME", "copart-0")
            .env(
                "STATE_DIR",
                std::env::temp_dir().join("trendstream-e2e").join(group),
            )
            .env("TRENDSTREAM_HTTP_ADDR", "127.0.0.1:0")
            .env("NO_COLOR", "1")
            .output()?;
        let log = String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout);
        assert!(!output.status.success(), "{inputs}: started anyway");
        assert!(
            log.contains("not co-partitioned") && log.contains(&expected),
            "{inputs}: expected the refusal to name {expected}:\n{log}"
        );
    }
    Ok(())
}

/// A zombie: replica-0 is paused (SIGSTOP) past its session timeout while it works, its
/// partitions move to replica-1, which finishes the input; then replica-0 resumes with the
/// records and Redis writes it had in hand. Its writes are fenced (the partitions' Redis
/// fencing tokens are replica-1's now), so Redis and the outputs still equal the oracle.
#[tokio::test(flavor = "multi_thread")]
async fn a_paused_replica_cannot_overwrite_redis_after_its_partitions_moved() -> anyhow::Result<()>
{
    let env = TestEnv::load()?;
    let redis_url = env.get("REDIS_URL")?.to_owned();
    let job = counter_job(&env, "zombie", 6)
        .await?
        .with("REDIS_URL", redis_url.clone())
        .with("KAFKA_SESSION_TIMEOUT", "6s");
    let (records, expected) = counted_records(&job.name, 40_000, 500);
    // replica-0's first transaction spans the whole test: it is paused with Redis writes in
    // hand and no commit in flight (whose pending offsets would hold replica-1 back until the
    // broker aborts the transaction, a minute after it began).
    let zombie = [
        ("COMMIT_INTERVAL", "50s"),
        ("COMMIT_MAX_RECORDS", "1000000"),
    ];
    let replica0 = job.start_with("replica-0", &zombie).await?;
    produce_records(&job.bootstrap, &job.input, &records)?;
    // replica-0 alone, mid-stream, with fetched records and Redis writes in hand.
    let deadline = Instant::now() + Duration::from_secs(60);
    while replica0.metric("trendstream_records_in_total").await < 5_000.0 {
        anyhow::ensure!(Instant::now() < deadline, "replica-0 did not get going");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    replica0.process.signal("STOP")?;
    let paused = Instant::now();
    println!("replica-0 paused");
    let replica1 = job.start("replica-1").await?;
    let deadline = Instant::now() + Duration::from_secs(90);
    while replica1.metric("trendstream_assigned_partitions").await < 6.0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "replica-1 never took every partition"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Resume once replica-1 wrote everything (the zombie committed nothing: replica-1 reads
    // every record; its last commit is 100 ms after its last record), while the zombie's
    // transaction is still open.
    while replica1.metric("trendstream_records_in_total").await < records.len() as f64 {
        anyhow::ensure!(
            paused.elapsed() < Duration::from_secs(45),
            "replica-1 did not catch up while the zombie's transaction was open"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_redis_counts(&redis_url, &expected).await?;
    println!(
        "resuming replica-0; replica-1 has read {} records",
        replica1.metric("trendstream_records_in_total").await
    );
    replica0.process.signal("CONT")?;
    // Time for the zombie to act on what it had in hand, learn of the rebalance and rejoin.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let log = std::fs::read_to_string(&replica0.process.log)?;
    let refusals = log
        .lines()
        .filter(|l| l.contains("transaction failed") && l.contains("fenced"))
        .count();
    println!("replica-0's Redis writes refused as fenced: {refusals} times");
    let output = job.read(&job.output, records.len(), Duration::from_secs(120))?;
    assert_exact_counts(&output, &expected)?;
    assert_redis_counts(&redis_url, &expected).await?;
    assert!(
        refusals > 0,
        "the zombie had writes in hand; log {}",
        replica0.process.log.display()
    );
    drop(replica1);
    Ok(())
}
