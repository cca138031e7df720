//! The runtime's example processor (`trendstream-example-counter`, count mode) as a job: its
//! input, and the check that its output and Redis hold exactly 1, 2, ..., n per key.

use crate::kafka::{Incoming, Outgoing, create_topic};
use crate::processor::Job;
use crate::{TestEnv, unique_name};
use std::collections::BTreeMap;

/// A job of the example counter with a fresh input topic of `partitions` partitions.
pub async fn counter_job(env: &TestEnv, prefix: &str, partitions: i32) -> anyhow::Result<Job> {
    let name = unique_name(prefix);
    let (input, output) = (format!("{name}-in"), format!("{name}-out"));
    let job = Job::new(env, "trendstream-example-counter", name, input, output)?;
    create_topic(&job.bootstrap, &job.input, partitions).await?;
    Ok(job)
}

/// `n` records over `keys` keys (`<prefix>-k<i>`), values `{"ts": ...}`; returns the records and
/// the expected count per key.
pub fn counted_records(
    prefix: &str,
    n: usize,
    keys: usize,
) -> (Vec<Outgoing>, BTreeMap<String, u64>) {
    let mut expected = BTreeMap::new();
    let records = (0..n)
        .map(|i| {
            let key = format!("{prefix}-k{}", (i * 7919) % keys);
            *expected.entry(key.clone()).or_insert(0) += 1;
            Outgoing {
                key: Some(key),
                value: format!("{{\"ts\":{}}}", 1_700_000_000_000_i64 + i as i64).into_bytes(),
                partition: None,
            }
        })
        .collect();
    (records, expected)
}

/// Checks the count job's committed output: per key exactly 1, 2, ..., n in order.
pub fn assert_exact_counts(
    output: &[Incoming],
    expected: &BTreeMap<String, u64>,
) -> anyhow::Result<()> {
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for record in output {
        let value: serde_json::Value =
            serde_json::from_slice(record.value.as_deref().unwrap_or_default())?;
        let key = value["key"].as_str().unwrap_or_default().to_owned();
        let count = value["count"].as_u64().unwrap_or_default();
        seen.entry(key).or_default().push(count);
    }
    let total: usize = seen.values().map(Vec::len).sum();
    let expected_total: u64 = expected.values().sum();
    anyhow::ensure!(
        total as u64 == expected_total,
        "{total} output records, expected {expected_total}"
    );
    for (key, n) in expected {
        let counts = seen.get(key).cloned().unwrap_or_default();
        let want: Vec<u64> = (1..=*n).collect();
        anyhow::ensure!(
            counts == want,
            "key {key}: counts {:?}... expected 1..={n}",
            &counts[..counts.len().min(10)]
        );
    }
    Ok(())
}

/// Redis at `redis_url` holds `counter:<key>` = n for every key.
pub async fn assert_redis_counts(
    redis_url: &str,
    expected: &BTreeMap<String, u64>,
) -> anyhow::Result<()> {
    let client = redis::Client::open(redis_url)?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    for (key, n) in expected {
        let value: Option<u64> = redis::cmd("GET")
            .arg(format!("counter:{key}"))
            .query_async(&mut redis)
            .await?;
        anyhow::ensure!(
            value == Some(*n),
            "redis counter:{key} = {value:?}, expected {n}"
        );
    }
    Ok(())
}
