//! session-aggregator against the real broker and Redis: a small event file with out-of-order
//! clicks, a late click, a click bridging two open sessions and a poison pill, produced as
//! loadgen would (with a watermark record per partition), processed by two replicas, and
//! compared with the oracle (`trendstream_e2e::oracle::sessions`).

use std::time::Duration;
use trendstream_e2e::TestEnv;
use trendstream_e2e::kafka::{Outgoing, create_topic, produce_records};
use trendstream_e2e::oracle::sessions::{self, EventLine};
use trendstream_e2e::session_job::{Clicks, SessionJob, run_to_end, user_on};

const PARTITIONS: i32 = 4;
const T0: i64 = 1_700_000_000_000;
const SEC: i64 = 1_000;
const MIN: i64 = 60 * SEC;

/// The scenario, one concern per partition so each partition's watermark is what the comments
/// say; then a watermark record per partition, as loadgen ends a run.
fn scenario(topic: &str) -> Vec<EventLine> {
    let mut e = Clicks::new(topic, PARTITIONS);
    let user_on = |base: &str, partition| user_on(base, partition, PARTITIONS);
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
    e.close_all()
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_match_the_oracle() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let job = SessionJob::new(&env, "sessions")?;

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
    job.assert_outputs(&expected, None).await?;
    job.stop(replicas)
}

/// loadgen's own traffic (its event file is the oracle's input) through two replicas, one of
/// them SIGKILLed and restarted while it works: the outputs are still exactly the oracle's.
#[tokio::test(flavor = "multi_thread")]
async fn loadgen_traffic_with_a_replica_killed_matches_the_oracle() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let job = SessionJob::new(&env, "sessions-loadgen")?;
    job.create_loadgen_topics(PARTITIONS).await?;
    // Both replicas run while loadgen produces; replica-0 is SIGKILLed right after it finished
    // and restarted with the same identity and state directory.
    let mut replica0 = job.start("replica-0").await?;
    let replica1 = job.start("replica-1").await?;
    run_to_end(job.loadgen(
        "--seed 11 --users 120 --count 8000 --rate 0 --poison-rate 0.005 \
         --out-of-order-rate 0.05 --late-rate 0.01",
    )?)
    .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let read = replica0.metric("trendstream_records_in_total").await;
    replica0.process.kill_now()?;
    println!("replica-0 SIGKILLed after reading {read} records");
    let replica0 = job.start("replica-0").await?;

    let expected = job.oracle()?;
    assert!(
        expected.summary_count() > 100,
        "enough sessions to be a test"
    );
    // loadgen's late clicks are behind the partition's watermark, but mostly within their
    // user's open session, which they join (on time for sessions); its poison pills go to the DLQ.
    assert!(!expected.dead.is_empty(), "poison pills in the run");
    job.assert_outputs(&expected, None).await?;
    job.stop([replica0, replica1])
}

/// SIGTERM while a replica is far behind: it stops taking input, commits what it processed,
/// checkpoints and leaves the group within the documented bound (docs/failures.md, "Shutdown"),
/// well inside the pod's 60 s grace period; it logs no error, and the replica that takes over
/// finishes with exactly the oracle's outputs.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_finishes_within_the_bound_and_loses_nothing() -> anyhow::Result<()> {
    const BOUND: Duration = Duration::from_secs(20);
    let env = TestEnv::load()?;
    let bucket = trendstream_e2e::unique_name("sigterm");
    trendstream_e2e::gcs::create_bucket(env.get("GCS_ENDPOINT")?, &bucket).await?;
    // Checkpoints to GCS too: the final one is uploaded within the bound.
    let job = SessionJob::new(&env, "sessions-sigterm")?
        .with("GCS_BUCKET", &bucket)
        .with("GCS_ENDPOINT", env.get("GCS_ENDPOINT")?)
        .with("CHECKPOINT_INTERVAL", "1s");
    job.create_loadgen_topics(PARTITIONS).await?;
    // The backlog first, so the replica is lagging when the signal comes.
    run_to_end(job.loadgen("--seed 5 --users 5000 --count 60000 --rate 0")?).await?;
    let mut replica = job.start("replica-0").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let read = replica.metric("trendstream_records_in_total").await;
    let signalled = std::time::Instant::now();
    let clean = replica.process.terminate(Duration::from_secs(60))?;
    let took = signalled.elapsed();
    println!("SIGTERM after {read} of 60000+ records: exited in {took:?} (clean: {clean})");
    assert!(clean, "clean exit; log {}", replica.process.log.display());
    assert!(took < BOUND, "shutdown took {took:?}, bound {BOUND:?}");
    assert!(
        std::fs::read_to_string(&replica.process.log)?.contains("stopped cleanly"),
        "committed, checkpointed and left the group; log {}",
        replica.process.log.display()
    );
    let errors = replica.process.error_lines();
    assert!(errors.is_empty(), "ERROR lines: {errors:#?}");

    let replica = job.start("replica-0").await?;
    job.assert_outputs(&job.oracle()?, None).await?;
    let errors = replica.process.error_lines();
    assert!(errors.is_empty(), "ERROR lines: {errors:#?}");
    job.stop([replica])
}
