//! Kafka as managed services offer it: TLS with a CA of its own and SASL/SCRAM-SHA-512. The test
//! broker's SASL_SSL listener (certificate and SCRAM user made by the e2e environment) carries a
//! whole pipeline run — loadgen and the three processors, every client of theirs configured by
//! the same `KAFKA_*` variables a StreamJob's `kafka.securitySecretRef` Secret holds — and the
//! outputs equal the oracles'. A wrong password ends the start with a reason naming the listener
//! and the authentication failure, not a hang, and no log line carries a password.

use std::time::Duration;
use trendstream_e2e::kafka::create_topic;
use trendstream_e2e::pipeline::{self, Expected, Run};
use trendstream_e2e::processor::Deployment;
use trendstream_e2e::{TestEnv, unique_name};

const PARTITIONS: i32 = 3;
const EVENTS: u64 = 20_000;
const DEADLINE: Duration = Duration::from_secs(600);

/// The `KAFKA_*` settings of the environment's SASL_SSL listener, with `password`.
fn security<'a>(env: &'a TestEnv, password: &'a str) -> anyhow::Result<Vec<(&'a str, &'a str)>> {
    Ok(vec![
        ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
        ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
        ("KAFKA_SASL_USERNAME", env.get("KAFKA_TEST_SASL_USERNAME")?),
        ("KAFKA_SASL_PASSWORD", password),
        ("KAFKA_SSL_CA_LOCATION", env.get("KAFKA_TEST_CA_CERT")?),
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pipeline_runs_through_a_tls_and_scram_listener() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let plaintext = env.get("KAFKA_BOOTSTRAP_SERVERS")?;
    let secure = env.get("KAFKA_SASL_SSL_BOOTSTRAP_SERVERS")?;
    let password = env.get("KAFKA_TEST_SASL_PASSWORD")?;
    let settings = security(&env, password)?;
    let run = Run::new(&unique_name("sasl-ssl"));
    create_topic(plaintext, &run.clicks, PARTITIONS).await?;
    create_topic(plaintext, &run.orders, PARTITIONS).await?;
    let events_file = run.dir()?.join("events.jsonl");

    let jobs = pipeline::deployments(secure, env.get("REDIS_URL")?, &run, PARTITIONS, &settings)?;
    let mut replicas = Vec::new();
    for (group, deployment) in &jobs {
        replicas.push(deployment.start(&format!("{group}-0")).await?);
    }
    let mut loadgen = pipeline::start_loadgen(
        secure,
        &run,
        EVENTS,
        0,
        pipeline::SEED,
        &events_file,
        &settings,
    )?;
    pipeline::wait_for_loadgen(&mut loadgen, Duration::from_secs(300)).await?;
    let want = Expected::compute(&run, &events_file)?;
    // Read back through the plaintext listener: the same broker, the same committed records.
    pipeline::check_outputs(plaintext, &run, &want, DEADLINE).await?;
    pipeline::check_side_outputs_and_redis(plaintext, env.get("REDIS_URL")?, &run, &want, DEADLINE)
        .await?;

    // Every record went through the secure listener: the processors' consumers and producers
    // are connected there only (their logs name it), and none logs the password.
    for (replica, (group, _)) in replicas.iter().zip(&jobs) {
        let log = std::fs::read_to_string(&replica.process.log)?;
        assert!(
            !log.contains(password),
            "{group}'s log carries the password"
        );
        assert!(
            replica.process.error_lines().is_empty(),
            "{group} logged errors: {:?}",
            replica.process.error_lines()
        );
    }
    let loadgen_log = std::fs::read_to_string(&loadgen.log)?;
    assert!(
        !loadgen_log.contains(password),
        "loadgen's log carries the password"
    );
    println!("{EVENTS} events through SASL_SSL at {secure}: outputs equal the oracles");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_ends_the_start_with_the_reason() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let plaintext = env.get("KAFKA_BOOTSTRAP_SERVERS")?;
    let secure = env.get("KAFKA_SASL_SSL_BOOTSTRAP_SERVERS")?;
    let wrong = "not-the-password-4711";
    let name = unique_name("sasl-wrong");
    let input = format!("{name}-orders");
    create_topic(plaintext, &input, 1).await?;
    let mut deployment = Deployment::new("fraud-detector", &name)?
        .with("KAFKA_BOOTSTRAP_SERVERS", secure)
        .with("KAFKA_INPUT_TOPICS", &input)
        .with("KAFKA_OUTPUT_TOPIC", format!("{name}-out"));
    for (key, value) in security(&env, wrong)? {
        deployment = deployment.with(key, value);
    }
    let started = std::time::Instant::now();
    let err = match deployment.start(&format!("{name}-0")).await {
        Ok(_) => anyhow::bail!("a replica with a wrong password became ready"),
        Err(err) => format!("{err:#}"),
    };
    println!(
        "refused after {:.1}s:\n{err}",
        started.elapsed().as_secs_f64()
    );
    let listener = format!(
        "cannot reach Kafka at {secure} over SASL_SSL (SCRAM-SHA-512 as user {})",
        env.get("KAFKA_TEST_SASL_USERNAME")?
    );
    assert!(err.contains("process exited"), "the replica exits: {err}");
    assert!(
        err.contains(&listener),
        "the reason names the listener: {err}"
    );
    assert!(
        err.contains("Authentication failed"),
        "the reason is the authentication: {err}"
    );
    assert!(!err.contains(wrong), "the password is not logged: {err}");
    Ok(())
}
