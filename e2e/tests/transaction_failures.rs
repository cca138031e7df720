//! Failed transactions against the real broker and Redis (docs/failures.md): each is aborted in
//! milliseconds and replayed, with no restart, and the outputs afterwards equal the oracle's.
//! - Redis frozen (SIGSTOP) for 30 s in the middle of a session-aggregator run: the replica
//!   backs off, says why in `/health/ready`, stays live, and resumes within seconds of Redis
//!   returning.
//! - One user whose session outgrows the record size limits among normal users: the clicks
//!   that would make its state too large for the changelog, and the summaries its output topic
//!   refuses, go to the dead-letter topic; every session is exact otherwise.
//! - A transaction open longer than `KAFKA_TRANSACTION_TIMEOUT`: the broker aborts it, sending
//!   the offsets fails, and a new producer replays it (example counter, exact counts).
//!
//! Each uses a redis-server of its own where it freezes one, stopped by its PID.

use std::time::{Duration, Instant};
use trendstream_e2e::counter::{
    assert_exact_counts, assert_redis_counts, counted_records, counter_job,
};
use trendstream_e2e::feature_api::{OwnRedis, log_dir};
use trendstream_e2e::kafka::{create_topic, create_topic_with, produce_records};
use trendstream_e2e::oracle::sessions::{self, EventLine};
use trendstream_e2e::process::free_port;
use trendstream_e2e::processor::Replica;
use trendstream_e2e::session_job::{Clicks, SessionJob, header, run_to_end, text, user_on};
use trendstream_e2e::{TestEnv, unique_name};

const PARTITIONS: i32 = 4;
const COMMITTED: &str = r#"trendstream_transactions_total{outcome="committed"}"#;
const ABORTED: &str = r#"trendstream_transactions_total{outcome="aborted"}"#;

async fn own_redis(name: &str) -> anyhow::Result<OwnRedis> {
    OwnRedis::start(free_port()?, &log_dir().join(unique_name(name))).await
}

/// The replica's failed transactions: aborted, by class, producers re-created.
struct Aborts {
    aborted: f64,
    record: f64,
    fatal: f64,
    recreated: f64,
}

/// Prints and returns the replica's failed transactions, with the mean time an abort took.
async fn report_aborts(replica: &Replica, test: &str) -> Aborts {
    let class =
        |class: &str| format!(r#"trendstream_transaction_failures_total{{class="{class}"}}"#);
    let aborts = Aborts {
        aborted: replica.metric(ABORTED).await,
        record: replica.metric(&class("record")).await,
        fatal: replica.metric(&class("fatal")).await,
        recreated: replica
            .metric("trendstream_producer_recreations_total")
            .await,
    };
    let seconds = replica.metric("trendstream_abort_seconds_sum").await;
    println!(
        "{test}: {} aborted transactions (transient {}, record {}, fatal {}), {} producers \
         re-created, {:.1} ms per abort on average, {} committed",
        aborts.aborted,
        replica.metric(&class("transient")).await,
        aborts.record,
        aborts.fatal,
        aborts.recreated,
        1000.0 * seconds / aborts.aborted.max(1.0),
        replica.metric(COMMITTED).await
    );
    aborts
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_frozen_for_30s_mid_run_the_replica_resumes_within_seconds() -> anyhow::Result<()> {
    const FROZEN: Duration = Duration::from_secs(30);
    let env = TestEnv::load()?;
    let redis = own_redis("txn-redis").await?;
    let job = SessionJob::new(&env, "txn-redis")?.with("REDIS_URL", &redis.url());
    job.create_loadgen_topics(PARTITIONS).await?;
    let mut replica = job.start("replica-0").await?;

    // loadgen at a steady rate for about 45 s: Redis freezes and thaws while it produces.
    let command = job.loadgen(
        "--seed 23 --users 400 --count 36000 --rate 800 --poison-rate 0.001 \
         --out-of-order-rate 0.05",
    )?;
    let loadgen = tokio::spawn(run_to_end(command));
    tokio::time::sleep(Duration::from_secs(8)).await;
    anyhow::ensure!(
        replica.metric(COMMITTED).await > 0.0,
        "nothing committed before the freeze"
    );

    redis.process.signal("STOP")?;
    let frozen = Instant::now();
    println!("redis-server {} frozen (SIGSTOP)", redis.process.pid());
    tokio::time::sleep(FROZEN / 2).await;
    // Retrying is not stuck: not ready, with the reason; live.
    let (status, body) = replica.health("/health/ready").await?;
    assert_eq!(status, 503, "ready while Redis is frozen: {body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("transaction failed") && reason.contains("redis"),
        "{reason}"
    );
    let (status, body) = replica.health("/health/live").await?;
    assert_eq!(status, 200, "live while retrying: {body}");
    tokio::time::sleep(FROZEN.saturating_sub(frozen.elapsed())).await;

    let before = replica.metric(COMMITTED).await;
    redis.process.signal("CONT")?;
    let thawed = Instant::now();
    while replica.metric(COMMITTED).await <= before {
        replica.process.check_alive()?;
        anyhow::ensure!(
            thawed.elapsed() < Duration::from_secs(30),
            "no commit within 30 s of Redis returning; log {}",
            replica.process.log.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resumed = thawed.elapsed();
    println!(
        "first commit {:.2} s after Redis returned (frozen {:.1} s)",
        resumed.as_secs_f64(),
        (thawed - frozen).as_secs_f64()
    );
    // At worst the backoff cap (5 s) plus one replay.
    assert!(
        resumed < Duration::from_secs(8),
        "resumed after {resumed:?}"
    );

    loadgen.await??;
    let expected = job.oracle()?;
    job.assert_outputs(&expected, None).await?;
    replica.process.check_alive()?;
    let aborts = report_aborts(&replica, "redis frozen 30 s").await;
    assert!(aborts.aborted >= 1.0, "the freeze failed transactions");
    assert_eq!(aborts.recreated, 0.0, "aborted, not re-created");
    job.stop([replica])
}

/// The output topic's `max.message.bytes`: below the producer's 1 MB, so the broker is what
/// refuses a large session summary.
const OUTPUT_LIMIT: usize = 256 * 1024;
const T0: i64 = 1_700_000_000_000;

/// Normal users on every partition, around two large ones: `big-a`'s state grows past the
/// producer's 1 MB record limit, `big-b`'s summary past the output topic's limit. Each large
/// user's clicks name a new 8 KB category every time.
fn oversized_scenario(topic: &str) -> (Vec<EventLine>, String, String) {
    let mut clicks = Clicks::new(topic, PARTITIONS);
    let big_a = user_on("big-a", 0, PARTITIONS);
    let big_b = user_on("big-b", 1, PARTITIONS);
    let category = |user: &str, i: usize| format!("{user}-{i:03}-{}", "x".repeat(8_000));
    for i in 0..140 {
        let ts = T0 + i as i64 * 1_000;
        clicks.click(&big_a, ts, "product_view", Some(&category(&big_a, i)));
        if i < 40 {
            clicks.click(&big_b, ts, "product_view", Some(&category(&big_b, i)));
        }
        if i % 2 == 0 {
            let user = format!("user-{}", i % 48);
            let kind = ["page_view", "search", "add_to_cart"][i % 3];
            clicks.click(&user, ts, kind, Some(["books", "toys"][i % 2]));
        }
    }
    (clicks.close_all(), big_a, big_b)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_session_goes_to_the_dlq_and_its_partition_moves_on() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let job = SessionJob::new(&env, "txn-size")?;
    create_topic(&job.bootstrap, &job.input, PARTITIONS).await?;
    create_topic_with(
        &job.bootstrap,
        &job.output,
        PARTITIONS,
        &[("max.message.bytes", &OUTPUT_LIMIT.to_string())],
    )
    .await?;
    let (lines, big_a, big_b) = oversized_scenario(&job.input);
    for partition in [0, 1] {
        assert!(
            lines
                .iter()
                .any(|l| l.partition == partition && l.value.contains("\"user-")),
            "normal users share partition {partition} with a large one"
        );
    }
    let full = sessions::expected(&job.settings(), &lines);
    let summaries = |user: &str| full.summaries.get(user).cloned().unwrap_or_default();
    let largest = |user: &str| summaries(user).iter().map(String::len).max();
    assert!(
        largest(&big_b).is_some_and(|n| n > OUTPUT_LIMIT && n < 500_000),
        "big-b's summary is too large for the output topic only"
    );
    assert!(
        largest(&big_a).is_some_and(|n| n > 1_000_000),
        "big-a outgrows 1 MB"
    );

    let replica = job.start("replica-0").await?;
    let records: Vec<_> = lines.iter().map(EventLine::to_outgoing).collect();
    produce_records(&job.bootstrap, &job.input, &records)?;
    // Every session ends (the large ones in the dead-letter topic); then the dead letters say
    // which clicks the replica refused.
    let committed = full.summary_count() - 2;
    job.read(&job.output, committed, Duration::from_secs(120))?;
    let dead = job.read(&job.dlq, 1, Duration::from_secs(30))?;
    let refused: Vec<_> = dead
        .iter()
        .filter(|r| header(r, "target.topic").is_none())
        .collect();
    assert!(!refused.is_empty(), "big-a's state outgrew the limit");
    for record in &refused {
        assert_eq!(
            record.key.as_deref(),
            Some(big_a.as_str()),
            "only big-a's clicks"
        );
        let error = header(record, "error").unwrap_or_default();
        assert!(
            error.contains("sessions-changelog") && error.contains("message.max.bytes"),
            "{error}"
        );
    }
    let refused_values: Vec<String> = refused.iter().map(|r| text(r)).collect();
    println!(
        "{} of big-a's clicks refused (state over 1 MB); oracle: {} summaries",
        refused_values.len(),
        full.summary_count()
    );

    // The oracle of the clicks that were not refused, which went to the dead-letter topic.
    let kept: Vec<EventLine> = lines
        .into_iter()
        .filter(|line| !refused_values.contains(&line.value))
        .collect();
    let mut expected = sessions::expected(&job.settings(), &kept);
    expected.dead.extend(refused_values);
    job.assert_outputs(&expected, Some(OUTPUT_LIMIT)).await?;
    assert!(
        expected.summaries.keys().any(|u| u == &big_b),
        "big-b's session closed"
    );
    // Each refused summary: one abort, and librdkafka fails the next transaction once more
    // while it bumps the producer epoch over the sequence gap the refused record left.
    let aborts = report_aborts(&replica, "oversized session").await;
    assert!(aborts.record >= 1.0, "the broker refused a summary");
    assert!(
        aborts.aborted <= 6.0,
        "a few aborts, not a retry loop: {}",
        aborts.aborted
    );
    assert_eq!((aborts.fatal, aborts.recreated), (0.0, 0.0));
    job.stop([replica])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timed_out_transaction_fails_sending_offsets_and_is_replayed() -> anyhow::Result<()> {
    const TXN_TIMEOUT: &str = "2s";
    // Beyond the transaction timeout plus the broker's check for timed-out transactions
    // (transaction.abort.timed.out.transaction.cleanup.interval.ms, 5 s in the test broker).
    const FROZEN: Duration = Duration::from_secs(10);
    let env = TestEnv::load()?;
    let redis = own_redis("txn-timeout").await?;
    let job = counter_job(&env, "txn-timeout", 3)
        .await?
        .with("REDIS_URL", redis.url())
        // A slow Redis rather than a failing one: the transaction outlives its timeout.
        .with("REDIS_TIMEOUT", "60s")
        .with("KAFKA_TRANSACTION_TIMEOUT", TXN_TIMEOUT);
    let (records, expected) = counted_records(&job.name, 20_000, 200);
    let (first, second) = records.split_at(records.len() / 2);
    let mut replica = job.start("replica-0").await?;
    produce_records(&job.bootstrap, &job.input, first)?;
    job.read(&job.output, first.len(), Duration::from_secs(60))?;

    redis.process.signal("STOP")?;
    let frozen = Instant::now();
    produce_records(&job.bootstrap, &job.input, second)?;
    tokio::time::sleep(FROZEN.saturating_sub(frozen.elapsed())).await;
    redis.process.signal("CONT")?;

    let output = job.read(&job.output, records.len(), Duration::from_secs(120))?;
    assert_exact_counts(&output, &expected)?;
    assert_redis_counts(&redis.url(), &expected).await?;
    replica.process.check_alive()?;
    let log = std::fs::read_to_string(&replica.process.log)?;
    assert!(
        log.contains("send offsets to transaction"),
        "sending the offsets failed; log {}",
        replica.process.log.display()
    );
    let aborts = report_aborts(&replica, "transaction timed out").await;
    assert!(aborts.aborted >= 1.0);
    assert_eq!(
        aborts.recreated, 1.0,
        "the fenced producer was replaced once"
    );
    assert!(
        replica.process.terminate(Duration::from_secs(30))?,
        "clean exit on SIGTERM"
    );
    Ok(())
}
