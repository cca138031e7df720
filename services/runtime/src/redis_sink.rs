//! Applies processors' idempotent Redis writes, in one pipeline per transaction.
//!
//! Writes are applied before the Kafka transaction commits: if the replica dies in between, the
//! input is replayed and the same writes are applied again, which leaves Redis unchanged
//! (every write is keyed by user, window or alert id; see [`RedisWrite`]).

use crate::processor::RedisWrite;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);

pub struct RedisSink {
    client: redis::Client,
    connection: Option<redis::Connection>,
}

#[derive(Debug, thiserror::Error)]
#[error("redis {url}: {source}")]
pub struct RedisSinkError {
    url: String,
    source: redis::RedisError,
}

impl RedisSink {
    /// Parses the URL; connects on first use.
    pub fn new(url: &str) -> Result<Self, RedisSinkError> {
        let client = redis::Client::open(url).map_err(|source| RedisSinkError {
            url: url.to_owned(),
            source,
        })?;
        Ok(Self {
            client,
            connection: None,
        })
    }

    /// Applies `writes` in order. On error the connection is dropped and re-made next time.
    pub fn apply(&mut self, writes: &[RedisWrite]) -> Result<(), RedisSinkError> {
        if writes.is_empty() {
            return Ok(());
        }
        let result = self.try_apply(writes);
        if result.is_err() {
            self.connection = None;
        }
        result.map_err(|source| RedisSinkError {
            url: self.client.get_connection_info().addr().to_string(),
            source,
        })
    }

    fn try_apply(&mut self, writes: &[RedisWrite]) -> redis::RedisResult<()> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => {
                let connection = self.client.get_connection_with_timeout(TIMEOUT)?;
                connection.set_read_timeout(Some(TIMEOUT))?;
                connection.set_write_timeout(Some(TIMEOUT))?;
                self.connection.insert(connection)
            }
        };
        pipeline(writes).query::<()>(connection)
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
