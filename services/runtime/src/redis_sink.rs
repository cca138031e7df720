//! Applies processors' idempotent Redis writes, in pipelined batches, before each transaction commits.
//!
//! Writes are applied before the Kafka transaction commits: if the replica dies in between, the
//! input is replayed and the same writes are applied again, which leaves Redis unchanged
//! (every write is keyed by user, window or alert id; see [`RedisWrite`]).

use crate::processor::RedisWrite;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
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
    pub fn new(client: redis::Client, timeout: Duration) -> std::io::Result<Self> {
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
            .spawn(move || Writer::new(client, timeout).run(runtime, inbox, report))?;
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
}

impl Writer {
    fn new(client: redis::Client, timeout: Duration) -> Self {
        Self {
            client,
            timeout,
            connection: None,
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
        pipeline(writes).query_async::<()>(connection).await
    }
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
