//! Benchmark of session-aggregator against Apache Flink on the same loadgen event file, in one
//! run (issue 4; docs/benchmarks.md):
//!
//! 1. (untimed) the event file's `clickstream` records go, key, value and partition as in the
//!    file, to a fresh topic on the test environment's Kafka;
//! 2. session-aggregator (release build, beside this binary) starts on that topic with a fresh
//!    consumer group, state dir and Redis key prefix. Timed from its spawn (so process start,
//!    group join and partition assignment count against it) until it has read every record and
//!    the transaction holding the last one committed: `trendstream_records_in_total` on its
//!    /metrics reached the count and the group's committed offsets (committed in the records'
//!    transaction) reached the end of every partition, polled every 5 ms.
//!    Its output sessions are then counted (untimed);
//! 3. e2e/bench/flink_sessions.py in the PyFlink venv: the same job in Flink SQL (SESSION window
//!    TVF, 30 min gap, 30 s watermark, parallelism 1, blackhole sink) over the same records;
//!    it reports the JVM start, the job's wall time (submit to end) and Flink's net runtime;
//! 4. both rates, the ratio and the target (>= 10x).
//!
//! The headline ratio is the conservative one: our cold start-to-done time against Flink's net
//! job runtime (without its JVM start, planning and MiniCluster start-up). The ratio against
//! Flink's submit-to-end wall time is printed beside it.
//!
//! Run: `make bench-sessions` (e2e/bench-sessions generates the event file, builds, installs
//! the venv and starts Kafka and Redis when they are not running).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use trendstream_e2e::kafka::{Outgoing, create_topic, produce_records, read_committed};
use trendstream_e2e::process::{Running, free_port, workspace_binary};
use trendstream_e2e::{TestEnv, unique_name};

const TARGET_RATIO: f64 = 10.0;
const CLICKS_TOPIC: &str = "clickstream";
const POLL: Duration = Duration::from_millis(5);
const OURS_TIMEOUT: Duration = Duration::from_secs(600);

struct Args {
    events_file: PathBuf,
    flink_python: PathBuf,
    flink_script: PathBuf,
    work_dir: PathBuf,
    /// flink-sql-connector-kafka: when given, also the same-work run (Kafka in and out).
    kafka_connector_jar: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut values = BTreeMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| anyhow::anyhow!("unexpected argument {flag:?}"))?
            .to_owned();
        let value = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("--{name} needs a value"))?;
        values.insert(name, value);
    }
    let mut take = |name: &str| {
        values.remove(name).map(PathBuf::from).ok_or_else(|| {
            anyhow::anyhow!(
                "usage: bench-sessions --events-file PATH --flink-python PATH --flink-script PATH --work-dir DIR [--kafka-connector-jar JAR] (missing --{name})"
            )
        })
    };
    let parsed = Args {
        events_file: take("events-file")?,
        flink_python: take("flink-python")?,
        flink_script: take("flink-script")?,
        work_dir: take("work-dir")?,
        kafka_connector_jar: take("kafka-connector-jar").ok(),
    };
    anyhow::ensure!(values.is_empty(), "unknown flags: {:?}", values.keys());
    Ok(parsed)
}

/// The event file's records of `topic`, in file order, and the topic's partition count.
fn clicks(events_file: &std::path::Path) -> anyhow::Result<(Vec<Outgoing>, i32)> {
    #[derive(serde::Deserialize)]
    struct Line {
        topic: String,
        partition: i32,
        key: Option<String>,
        value: Option<String>,
    }
    let text = std::fs::read_to_string(events_file)
        .with_context(|| format!("reading {}", events_file.display()))?;
    let mut records = Vec::new();
    let mut partitions = 0;
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(line)
            .with_context(|| format!("{}:{}", events_file.display(), index + 1))?;
        if line.topic != CLICKS_TOPIC {
            continue;
        }
        let Some(value) = line.value else { continue };
        partitions = partitions.max(line.partition + 1);
        records.push(Outgoing {
            key: line.key,
            value: value.into_bytes(),
            partition: Some(line.partition),
        });
    }
    anyhow::ensure!(
        !records.is_empty(),
        "no {CLICKS_TOPIC} records in {}",
        events_file.display()
    );
    Ok((records, partitions))
}

/// Sum of the samples of `metric` (any labels) whose label text contains `label`.
fn metric_sum(text: &str, metric: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            let bare = name.split('{').next()?;
            (bare == metric && name.contains(label)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// The consumer group's committed offsets against the end of each input partition, read
/// without joining the group.
struct GroupOffsets {
    consumer: rdkafka::consumer::BaseConsumer,
    ends: rdkafka::TopicPartitionList,
    wanted: BTreeMap<i32, i64>,
}

impl GroupOffsets {
    fn new(
        bootstrap: &str,
        group: &str,
        topic: &str,
        records: &[Outgoing],
    ) -> anyhow::Result<Self> {
        let mut wanted = BTreeMap::new();
        for record in records {
            *wanted.entry(record.partition.unwrap_or(0)).or_insert(0) += 1;
        }
        let mut ends = rdkafka::TopicPartitionList::new();
        for partition in wanted.keys() {
            ends.add_partition(topic, *partition);
        }
        let consumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()?;
        Ok(Self {
            consumer,
            ends,
            wanted,
        })
    }

    fn all_committed(&self) -> anyhow::Result<bool> {
        use rdkafka::consumer::Consumer;
        let committed = self
            .consumer
            .committed_offsets(self.ends.clone(), Duration::from_secs(5))?;
        Ok(self.wanted.iter().all(|(partition, count)| {
            committed
                .elements()
                .iter()
                .find(|e| e.partition() == *partition)
                .and_then(|e| e.offset().to_raw())
                .is_some_and(|offset| offset >= *count)
        }))
    }
}

/// Records committed on `topic` (read until it has been quiet for 5 s).
fn committed_count(bootstrap: &str, topic: &str) -> anyhow::Result<usize> {
    Ok(read_committed(
        bootstrap,
        topic,
        1,
        Duration::from_secs(5),
        Duration::from_secs(120),
    )?
    .len())
}

struct Ours {
    /// The topic session-aggregator read, for Flink's same-work run.
    input: String,
    seconds: f64,
    first_record_seconds: f64,
    sessions: usize,
    /// Where the time went, from the process's own metrics and /proc at the end.
    breakdown: Breakdown,
}

#[derive(Default)]
struct Breakdown {
    cpu_seconds: f64,
    processing_seconds: f64,
    commit_seconds: f64,
    commits: f64,
    /// Seconds per commit phase (changelog, redis, offsets, kafka_commit).
    phases: Vec<(&'static str, f64)>,
}

impl Breakdown {
    fn read(metrics: &str, process: &Running) -> Self {
        Self {
            cpu_seconds: process.cpu_seconds().unwrap_or(f64::NAN),
            processing_seconds: metric_sum(metrics, "trendstream_processing_seconds_sum", ""),
            commit_seconds: metric_sum(metrics, "trendstream_commit_seconds_sum", ""),
            commits: metric_sum(metrics, "trendstream_commit_seconds_count", ""),
            phases: ["changelog", "redis", "offsets", "kafka_commit"]
                .into_iter()
                .map(|phase| {
                    let label = format!("phase=\"{phase}\"");
                    let sum = metric_sum(metrics, "trendstream_commit_phase_seconds_sum", &label);
                    (phase, sum)
                })
                .collect(),
        }
    }
}

async fn run_ours(
    env: &TestEnv,
    args: &Args,
    records: &[Outgoing],
    partitions: i32,
) -> anyhow::Result<Ours> {
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
    let redis = env.get("REDIS_URL")?.to_owned();
    let name = unique_name("bench-sessions");
    let input = format!("{name}-clicks");
    let output = format!("{name}-sessions");
    create_topic(&bootstrap, &input, partitions).await?;
    for topic in [&output, &format!("{name}-late"), &format!("{name}-dlq")] {
        create_topic(&bootstrap, topic, partitions).await?;
    }
    let started = Instant::now();
    produce_records(&bootstrap, &input, records)?;
    println!(
        "trendstream: {} records produced to {input} ({partitions} partitions) in {:.1}s (untimed)",
        records.len(),
        started.elapsed().as_secs_f64()
    );

    let port = free_port()?;
    let dir = args.work_dir.join("session-aggregator");
    std::fs::create_dir_all(&dir)?;
    let mut command = Command::new(workspace_binary("session-aggregator")?);
    command
        .env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
        .env("KAFKA_INPUT_TOPICS", &input)
        .env("KAFKA_OUTPUT_TOPIC", &output)
        .env("KAFKA_LATE_TOPIC", format!("{name}-late"))
        .env("KAFKA_DLQ_TOPIC", format!("{name}-dlq"))
        .env("KAFKA_CONSUMER_GROUP", &name)
        .env("POD_NAME", "bench-0")
        .env("STATE_DIR", dir.join("state"))
        .env("TRENDSTREAM_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("REDIS_URL", &redis)
        .env("REDIS_KEY_PREFIX", name.replace('-', "_"))
        .env("SESSION_GAP", "30m")
        .env("MAX_OUT_OF_ORDERNESS", "30s")
        .env("RUST_LOG", "warn");
    let http = reqwest::Client::new();
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    let expected = records.len() as f64;
    let spawned = Instant::now();
    let mut process = Running::start(command, dir.join("session-aggregator.log"))?;
    let mut first_record = None;
    let mut last_metrics = String::new();
    let offsets = GroupOffsets::new(&bootstrap, &name, &input, records)?;
    let done = loop {
        anyhow::ensure!(
            spawned.elapsed() < OURS_TIMEOUT,
            "session-aggregator did not process {expected} records in {OURS_TIMEOUT:?}; log: {}",
            process.log.display()
        );
        process.check_alive()?;
        let read = match http
            .get(&metrics_url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            Ok(response) => {
                last_metrics = response.text().await.unwrap_or_default();
                metric_sum(&last_metrics, "trendstream_records_in_total", &input)
            }
            Err(_) => 0.0,
        };
        if read > 0.0 && first_record.is_none() {
            first_record = Some(spawned.elapsed());
        }
        // Done when the group's committed offsets (committed in the same transaction as the
        // records' output) reached the end of every partition.
        if read >= expected && offsets.all_committed()? {
            break spawned.elapsed();
        }
        tokio::time::sleep(POLL).await;
    };
    let first_record = first_record.unwrap_or(done);
    let breakdown = Breakdown::read(&last_metrics, &process);
    let sessions = committed_count(&bootstrap, &output)?;
    process.terminate(Duration::from_secs(10))?;
    Ok(Ours {
        input,
        seconds: done.as_secs_f64(),
        first_record_seconds: first_record.as_secs_f64(),
        sessions,
        breakdown,
    })
}

#[derive(serde::Deserialize)]
struct Flink {
    events: usize,
    jvm_seconds: f64,
    job_seconds: f64,
    net_runtime_seconds: Option<f64>,
    sessions: Option<i64>,
    flink_version: String,
}

/// Flink's same-work run: from the Kafka topic session-aggregator read, to a Kafka topic.
struct FlinkKafka<'a> {
    bootstrap: &'a str,
    input: &'a str,
    output: &'a str,
    jar: &'a std::path::Path,
}

fn run_flink(args: &Args, kafka: Option<&FlinkKafka<'_>>) -> anyhow::Result<Flink> {
    let run = if kafka.is_some() {
        "flink-kafka"
    } else {
        "flink"
    };
    let mut command = Command::new(&args.flink_python);
    command
        .arg(&args.flink_script)
        .arg("--events-file")
        .arg(&args.events_file)
        .arg("--work-dir")
        .arg(args.work_dir.join(run))
        .stderr(std::fs::File::create(
            args.work_dir.join(format!("{run}.stderr.log")),
        )?);
    match kafka {
        Some(kafka) => {
            command
                .args(["--kafka-bootstrap", kafka.bootstrap])
                .args(["--kafka-topic", kafka.input])
                .args(["--kafka-output-topic", kafka.output])
                .arg("--kafka-connector-jar")
                .arg(kafka.jar);
        }
        None => {
            command.arg("--count-sessions");
        }
    }
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines().filter(|l| !l.starts_with('{')) {
        println!("{line}");
    }
    anyhow::ensure!(
        output.status.success(),
        "the Flink job failed ({}); see {}",
        output.status,
        args.work_dir.join(format!("{run}.stderr.log")).display()
    );
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| anyhow::anyhow!("no result line from the Flink script:\n{stdout}"))?;
    Ok(serde_json::from_str(last)?)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn rate(events: usize, seconds: f64) -> f64 {
    events as f64 / seconds
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    std::fs::create_dir_all(&args.work_dir)?;
    let env = TestEnv::load()?;
    println!("load average at start: {}", load_average());
    let (records, partitions) = clicks(&args.events_file)?;
    let events = records.len();
    println!(
        "{events} {CLICKS_TOPIC} records in {}",
        args.events_file.display()
    );

    let ours = run_ours(&env, &args, &records, partitions).await?;
    drop(records);
    let ours_rate = rate(events, ours.seconds);
    println!(
        "trendstream: session-aggregator read and committed {events} events in {:.2}s from spawn: {ours_rate:.0} events/s \
         (first record at {:.2}s; {:.0} events/s from then); {} sessions out",
        ours.seconds,
        ours.first_record_seconds,
        rate(events, ours.seconds - ours.first_record_seconds),
        ours.sessions
    );
    let b = &ours.breakdown;
    println!(
        "trendstream: where the time went: {:.2}s CPU (all threads); {:.2}s processing records; \
         {:.2}s in {:.0} commits ({:.1} ms each)",
        b.cpu_seconds,
        b.processing_seconds,
        b.commit_seconds,
        b.commits,
        1000.0 * b.commit_seconds / b.commits.max(1.0)
    );
    let phases: Vec<String> = b
        .phases
        .iter()
        .map(|(phase, seconds)| format!("{phase} {seconds:.2}s"))
        .collect();
    println!("trendstream: commit phases: {}", phases.join(", "));

    let flink = run_flink(&args, None)?;
    anyhow::ensure!(
        flink.events == events,
        "Flink read {} events, TrendStream {events}",
        flink.events
    );
    let flink_wall_rate = rate(events, flink.job_seconds);
    let flink_net_rate = flink
        .net_runtime_seconds
        .map(|s| rate(events, s))
        .unwrap_or(flink_wall_rate);
    let ratio = ours_rate / flink_net_rate;
    println!("load average at end: {}", load_average());
    println!();
    println!("sessions benchmark, {events} click events, gap 30 min, parallelism 1 on both sides");
    println!(
        "  TrendStream session-aggregator (spawn to last commit):  {ours_rate:>10.0} events/s ({:.2}s)",
        ours.seconds
    );
    println!(
        "  Flink {} SQL SESSION window, net job runtime:        {flink_net_rate:>10.0} events/s ({:.2}s)",
        flink.flink_version,
        flink.net_runtime_seconds.unwrap_or(flink.job_seconds)
    );
    println!(
        "  Flink submit-to-end wall time (planning, MiniCluster):  {flink_wall_rate:>10.0} events/s ({:.2}s; JVM start {:.2}s on top)",
        flink.job_seconds, flink.jvm_seconds
    );
    println!(
        "  sessions: TrendStream {}, Flink {}",
        ours.sessions,
        flink
            .sessions
            .map_or_else(|| "?".to_owned(), |s| s.to_string())
    );
    println!(
        "  ratio (ours / Flink net runtime): {ratio:.1}x; against Flink's wall time {:.1}x; target >= {TARGET_RATIO:.0}x: {}",
        ours_rate / flink_wall_rate,
        if ratio >= TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        }
    );
    if let Some(jar) = &args.kafka_connector_jar {
        same_work(&env, &args, jar, &ours, events).await?;
    }
    Ok(())
}

/// Flink doing session-aggregator's durable work: the same Kafka topic in, RocksDB state,
/// exactly-once checkpoints every 100 ms (session-aggregator's commit interval), sessions to a
/// Kafka topic in transactions. Only session-aggregator's Redis writes have no counterpart.
async fn same_work(
    env: &TestEnv,
    args: &Args,
    jar: &std::path::Path,
    ours: &Ours,
    events: usize,
) -> anyhow::Result<()> {
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
    let output = format!("{}-flink-sessions", ours.input);
    create_topic(&bootstrap, &output, 1).await?;
    println!();
    println!("same work: Flink reads {} and writes {output}", ours.input);
    let flink = run_flink(
        args,
        Some(&FlinkKafka {
            bootstrap: &bootstrap,
            input: &ours.input,
            output: &output,
            jar,
        }),
    )?;
    let sessions = committed_count(&bootstrap, &output)?;
    let ours_rate = rate(events, ours.seconds);
    let net = flink.net_runtime_seconds.unwrap_or(flink.job_seconds);
    let flink_rate = rate(events, net);
    println!("load average at end: {}", load_average());
    println!();
    println!(
        "same work (Kafka in and out, RocksDB state, exactly-once every 100 ms), {events} click events"
    );
    println!(
        "  TrendStream session-aggregator (spawn to last commit):  {ours_rate:>10.0} events/s ({:.2}s)",
        ours.seconds
    );
    println!(
        "  Flink {} SQL SESSION window, Kafka to Kafka, net runtime: {flink_rate:>8.0} events/s ({net:.2}s; submit-to-end {:.2}s)",
        flink.flink_version, flink.job_seconds
    );
    println!(
        "  sessions: TrendStream {}, Flink {sessions} (committed)",
        ours.sessions
    );
    println!(
        "  ratio (ours / Flink net runtime): {:.1}x",
        ours_rate / flink_rate
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_a_metric_over_matching_labels() {
        let text = "# HELP trendstream_records_in_total x\n\
                    trendstream_records_in_total{topic=\"a-clicks\"} 5\n\
                    trendstream_records_in_total{topic=\"b\"} 7\n\
                    trendstream_records_in_total_created 1\n\
                    trendstream_transactions_total{outcome=\"committed\"} 3\n";
        assert_eq!(
            metric_sum(text, "trendstream_records_in_total", "a-clicks"),
            5.0
        );
        assert_eq!(
            metric_sum(text, "trendstream_transactions_total", "committed"),
            3.0
        );
    }
}
