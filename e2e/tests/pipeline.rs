//! The whole pipeline against the real broker and Redis: loadgen sends 200 000 events (planted
//! fraud, out-of-order and late events, 0.5% poison pills) to session-aggregator,
//! fraud-detector and revenue-calculator, two replicas each; their committed outputs and Redis
//! keys must equal the oracles' exactly, and every poison pill must be in a DLQ. The second test
//! does the same while a random replica is SIGKILLed (and restarted) every 10 s.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use trendstream_e2e::kafka::create_topic;
use trendstream_e2e::pipeline::{self, Expected, Run};
use trendstream_e2e::processor::Replica;
use trendstream_e2e::{TestEnv, unique_name};

const PARTITIONS: i32 = 6;
const EVENTS: u64 = 200_000;
/// How long the outputs may take to appear (debug builds, six processes on two cores).
const DEADLINE: Duration = Duration::from_secs(900);

async fn run_pipeline(chaos: bool) -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
    let run = Run::new(&unique_name(if chaos { "chaos" } else { "pipeline" }));
    create_topic(&bootstrap, &run.clicks, PARTITIONS).await?;
    create_topic(&bootstrap, &run.orders, PARTITIONS).await?;
    let events_file = run.dir()?.join("events.jsonl");

    let jobs = pipeline::deployments(&bootstrap, env.get("REDIS_URL")?, &run, PARTITIONS, &[])?;
    let mut replicas: Vec<(usize, String, Replica)> = Vec::new();
    for (index, (group, deployment)) in jobs.iter().enumerate() {
        for replica in 0..2 {
            let instance = format!("{group}-{replica}");
            replicas.push((index, instance.clone(), deployment.start(&instance).await?));
        }
    }
    let replicas = Arc::new(Mutex::new(replicas));
    let mut loadgen = pipeline::start_loadgen(
        &bootstrap,
        &run,
        EVENTS,
        0,
        pipeline::SEED,
        &events_file,
        &[],
    )?;
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

    pipeline::wait_for_loadgen(&mut loadgen, Duration::from_secs(600)).await?;
    let want = Expected::compute(&run, &events_file)?;
    pipeline::check_outputs(&bootstrap, &run, &want, DEADLINE).await?;

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Some(task) = chaos_task {
        let kills = task.await??;
        println!("chaos: {kills} replicas killed during the run");
        assert!(kills >= 1, "chaos killed at least one replica");
    }

    // Dead letters, late records and Redis, once everything is processed.
    pipeline::check_side_outputs_and_redis(&bootstrap, env.get("REDIS_URL")?, &run, &want, DEADLINE)
        .await
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
