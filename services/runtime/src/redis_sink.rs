//! Applies processors' idempotent Redis writes, in pipelined batches, before each transaction commits.
//!
//! Writes are applied before the Kafka transaction commits: if the replica dies in between, the
//! input is replayed and the same writes are applied again, which leaves Redis unchanged
//! (every write is keyed by user, window or alert id; see [`RedisWrite`]).
//!
//! A replica that lost its partitions without knowing it yet (paused past its session timeout,
//! cut off from the broker) must not overwrite what the partitions' new owner wrote. Each
//! owner of a partition takes a fencing token, `INCR <prefix>:<partition>`, before its first
//! write; every batch is a `MULTI`/`EXEC` under `WATCH` of the tokens of the partitions the
//! replica owns, applied only if they are all still its own. A newer owner's `INCR` makes the
//! older one's batches fail (the transaction aborts, the zombie learns of the rebalance at
//! its next poll); writes an old owner applied before the new owner took its token are
//! rewritten by the new owner's replay from the committed offsets.

use crate::processor::RedisWrite;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::time::Duration;

/// Applies writes on a thread of its own, so Redis round trips overlap with processing: the
/// engine hands over batches while the transaction is open and waits for them all before the
/// Kafka commit. One connection, one FIFO: writes land in the order they were made.
pub struct RedisSink {
    url: String,
    jobs: mpsc::Sender<Job>,
    results: mpsc::Receiver<redis::RedisResult<()>>,
}

enum Job {
    Apply(Vec<RedisWrite>),
    /// The partitions the replica owns now (their writes are fenced by their tokens).
    Assign(BTreeSet<i32>),
    /// Reports the first error since the previous barrier (or success).
    Barrier,
}

#[derive(Debug, thiserror::Error)]
#[error("redis {url}: {source}")]
pub struct RedisSinkError {
    url: String,
    source: redis::RedisError,
}

impl RedisSink {
    /// Starts the writer thread; it connects on first use. Connecting, or applying one batch
    /// of writes, taking longer than `timeout` fails the writes (and so the transaction).
    /// `fence_prefix` names the partitions' fencing tokens (`<fence_prefix>:<partition>`):
    /// one per consumer group, as the partitions are the group's.
    pub fn new(
        client: redis::Client,
        timeout: Duration,
        fence_prefix: String,
    ) -> std::io::Result<Self> {
        // For errors: the address, never the password.
        let url = client.get_connection_info().addr().to_string();
        let (jobs, inbox) = mpsc::channel();
        let (report, results) = mpsc::channel();
        // The async connection bounds a whole pipeline by the timeout; the blocking one reads
        // each of its replies with the timeout, so a frozen server held a batch of a thousand
        // writes for a thousand timeouts.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("redis-writer".into())
            .spawn(move || {
                Writer::new(client, timeout, fence_prefix).run(runtime, inbox, report)
            })?;
        Ok(Self { url, jobs, results })
    }

    /// Queues `writes` behind the ones queued before.
    pub fn submit(&self, writes: Vec<RedisWrite>) -> Result<(), RedisSinkError> {
        if writes.is_empty() {
            return Ok(());
        }
        self.jobs
            .send(Job::Apply(writes))
            .map_err(|_| self.writer_gone())
    }

    /// Writes queued from now on belong to `partitions`: newly owned ones take a fresh fencing
    /// token before their first write.
    pub fn assign(&self, partitions: BTreeSet<i32>) -> Result<(), RedisSinkError> {
        self.jobs
            .send(Job::Assign(partitions))
            .map_err(|_| self.writer_gone())
    }

    /// Waits until everything queued is applied: `Err` with the first failure since the last
    /// wait (the writes after a failure are skipped; the transaction is replayed).
    pub fn wait(&self) -> Result<(), RedisSinkError> {
        self.jobs
            .send(Job::Barrier)
            .map_err(|_| self.writer_gone())?;
        match self.results.recv() {
            Ok(result) => result.map_err(|source| RedisSinkError {
                url: self.url.clone(),
                source,
            }),
            Err(_) => Err(self.writer_gone()),
        }
    }

    fn writer_gone(&self) -> RedisSinkError {
        RedisSinkError {
            url: self.url.clone(),
            source: redis::RedisError::from(std::io::Error::other(
                "the Redis writer thread stopped",
            )),
        }
    }
}

struct Writer {
    client: redis::Client,
    timeout: Duration,
    connection: Option<MultiplexedConnection>,
    fence_prefix: String,
    owned: BTreeSet<i32>,
    /// The fencing token taken per owned partition (taken before its first write).
    tokens: BTreeMap<i32, i64>,
}

impl Writer {
    fn new(client: redis::Client, timeout: Duration, fence_prefix: String) -> Self {
        Self {
            client,
            timeout,
            connection: None,
            fence_prefix,
            owned: BTreeSet::new(),
            tokens: BTreeMap::new(),
        }
    }

    fn run(
        mut self,
        runtime: tokio::runtime::Runtime,
        inbox: mpsc::Receiver<Job>,
        report: mpsc::Sender<redis::RedisResult<()>>,
    ) {
        let mut failure = None;
        while let Ok(job) = inbox.recv() {
            match job {
                Job::Apply(_) if failure.is_some() => {}
                Job::Apply(writes) => {
                    if let Err(err) = runtime.block_on(self.apply(&writes)) {
                        // Re-connect next time: the connection may be broken half-way.
                        self.connection = None;
                        failure = Some(err);
                    }
                }
                Job::Assign(partitions) => {
                    self.tokens.retain(|p, _| partitions.contains(p));
                    self.owned = partitions;
                }
                Job::Barrier => {
                    if report.send(failure.take().map_or(Ok(()), Err)).is_err() {
                        return;
                    }
                }
            }
        }
    }

    async fn apply(&mut self, writes: &[RedisWrite]) -> redis::RedisResult<()> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout));
                let connection = self
                    .client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                self.connection.insert(connection)
            }
        };
        for &partition in &self.owned {
            if !self.tokens.contains_key(&partition) {
                let token: i64 = redis::cmd("INCR")
                    .arg(fence_key(&self.fence_prefix, partition))
                    .query_async(connection)
                    .await?;
                self.tokens.insert(partition, token);
            }
        }
        if self.tokens.is_empty() {
            return pipeline(writes).query_async::<()>(connection).await;
        }
        let keys: Vec<String> = self
            .tokens
            .keys()
            .map(|&p| fence_key(&self.fence_prefix, p))
            .collect();
        let (current,): (Vec<Option<i64>>,) = redis::pipe()
            .cmd("WATCH")
            .arg(&keys)
            .ignore()
            .cmd("MGET")
            .arg(&keys)
            .query_async(connection)
            .await?;
        if let Some(reason) = stale_fence(&self.tokens, &current) {
            redis::cmd("UNWATCH").query_async::<()>(connection).await?;
            return Err(fenced(reason));
        }
        let applied: Option<()> = pipeline(writes).atomic().query_async(connection).await?;
        applied
            .ok_or_else(|| fenced("a fencing token changed while the writes were sent".to_owned()))
    }
}

/// The key of `partition`'s fencing token.
fn fence_key(prefix: &str, partition: i32) -> String {
    format!("{prefix}:{partition}")
}

/// Why writes with `tokens` (partition → the token this replica took) must not be applied,
/// given the tokens Redis holds now (`current`, in the same order): another replica took one
/// of the partitions since.
fn stale_fence(tokens: &BTreeMap<i32, i64>, current: &[Option<i64>]) -> Option<String> {
    tokens
        .iter()
        .zip(current.iter().copied().chain(std::iter::repeat(None)))
        .find(|((_, token), now)| *now != Some(**token))
        .map(|((partition, token), now)| {
            format!(
                "fenced: partition {partition} has another owner (fencing token {} in Redis, \
                 this replica's is {token}); its writes are refused",
                now.map_or_else(|| "missing".to_owned(), |n| n.to_string())
            )
        })
}

fn fenced(reason: String) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Client, "fenced", reason))
}

/// The pipeline for `writes` (pure; tested without a server).
pub fn pipeline(writes: &[RedisWrite]) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for RedisWrite(words) in writes {
        if let Some((name, args)) = words.split_first() {
            pipe.cmd(name).arg(args).ignore();
        }
    }
    pipe
}

#[cfg(test)]
mod tests {
    use super::*;
    use trendstream_events::feature_store::WriteOp;

    #[test]
    fn writes_are_refused_once_another_replica_took_a_partition() {
        let tokens = BTreeMap::from([(0, 3), (4, 7)]);
        assert_eq!(stale_fence(&tokens, &[Some(3), Some(7)]), None);
        let reason = stale_fence(&tokens, &[Some(3), Some(8)]).expect("fenced");
        assert!(
            reason.contains(
                "partition 4 has another owner (fencing token 8 in Redis, this replica's is 7)"
            ),
            "{reason}"
        );
        let reason = stale_fence(&tokens, &[None, Some(7)]).expect("fenced");
        assert!(
            reason.contains("partition 0") && reason.contains("missing"),
            "{reason}"
        );
        assert!(
            stale_fence(&tokens, &[Some(3)]).is_some(),
            "an answer too short"
        );
        assert_eq!(fence_key("trendstream:fence:g", 4), "trendstream:fence:g:4");
    }

    #[test]
    fn pipeline_sends_each_command() {
        let writes = [
            RedisWrite::set("k", "v"),
            WriteOp::ZKeepNewest {
                key: "z".into(),
                keep: 2,
            }
            .into(),
        ];
        let packed = String::from_utf8(pipeline(&writes).get_packed_pipeline()).expect("utf8");
        let words: Vec<&str> = packed
            .split("\r\n")
            .filter(|w| !w.is_empty() && !w.starts_with(['*', '$']))
            .collect();
        assert_eq!(words, ["SET", "k", "v", "ZREMRANGEBYRANK", "z", "0", "-3"]);
    }
}
