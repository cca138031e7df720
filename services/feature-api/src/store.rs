//! Reads of the Redis feature store, in the layout of `trendstream_events::feature_store`.
//!
//! One multiplexed connection (redis `ConnectionManager`) serves every request; it connects
//! lazily and reconnects by itself after Redis restarts. Every call is bounded by the Redis
//! timeout, so a down or slow Redis turns into [`StoreError::Unavailable`] quickly.

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::de::DeserializeOwned;
use trendstream_events::feature_store::KeySpace;
use trendstream_events::{FraudAlert, RevenueWindow, SessionSummary, UserFeatures};

use crate::errors::ApiError;

/// Most revenue windows one read returns (one day of one-minute windows, plus one).
pub const MAX_WINDOWS: usize = 1441;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("{key} holds a value that does not decode: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Redis(_) | StoreError::Timeout(_) => ApiError::Unavailable(err.to_string()),
            StoreError::Corrupt { .. } => ApiError::Internal(err.to_string()),
        }
    }
}

/// The feature store.
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    keys: KeySpace,
    timeout: Duration,
}

impl Store {
    /// A store on `client`'s server; no connection is made until the first call.
    pub fn new(
        client: redis::Client,
        keys: KeySpace,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Reconnection happens in the background; a request never waits for a backoff.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            conn,
            keys,
            timeout,
        })
    }

    pub fn keys(&self) -> &KeySpace {
        &self.keys
    }

    async fn run<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        self.run(cmd.query_async(&mut conn)).await
    }

    /// PING: whether Redis answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.query(&redis::cmd("PING")).await?;
        Ok(())
    }

    /// The user's live features, if any.
    pub async fn user_features(&self, user_id: &str) -> Result<Option<UserFeatures>, StoreError> {
        let key = self.keys.user_features(user_id);
        let value: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(&key)).await?;
        value.map(|bytes| decode(&key, &bytes)).transpose()
    }

    /// Whether anything is stored for the user (features, sessions or alerts).
    pub async fn user_known(&self, user_id: &str) -> Result<bool, StoreError> {
        let count: u64 = self
            .query(
                redis::cmd("EXISTS")
                    .arg(self.keys.user_features(user_id))
                    .arg(self.keys.user_sessions(user_id))
                    .arg(self.keys.user_alerts(user_id)),
            )
            .await?;
        Ok(count > 0)
    }

    /// The user's newest sessions, newest first.
    pub async fn user_sessions(
        &self,
        user_id: &str,
        limit: usize,
    ) -> Result<Vec<SessionSummary>, StoreError> {
        let key = self.keys.user_sessions(user_id);
        let members: Vec<Vec<u8>> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(limit.saturating_sub(1))
                    .arg("REV"),
            )
            .await?;
        members.iter().map(|m| decode(&key, m)).collect()
    }

    /// The user's alerts at or after `since`, newest first.
    pub async fn user_alerts(
        &self,
        user_id: &str,
        since: i64,
        limit: usize,
    ) -> Result<Vec<FraudAlert>, StoreError> {
        self.alerts_in(&self.keys.user_alerts(user_id), since, limit)
            .await
    }

    /// Every user's alerts at or after `since`, newest first.
    pub async fn recent_alerts(
        &self,
        since: i64,
        limit: usize,
    ) -> Result<Vec<FraudAlert>, StoreError> {
        self.alerts_in(&self.keys.alerts_all(), since, limit).await
    }

    async fn alerts_in(
        &self,
        index: &str,
        since: i64,
        limit: usize,
    ) -> Result<Vec<FraudAlert>, StoreError> {
        let ids: Vec<String> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(index)
                    .arg("+inf")
                    .arg(since)
                    .arg("BYSCORE")
                    .arg("REV")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit),
            )
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.keys.alert(id)).collect();
        let values: Vec<Option<Vec<u8>>> = self.query(redis::cmd("MGET").arg(&keys)).await?;
        // An id whose alert has expired is skipped.
        keys.iter()
            .zip(values)
            .filter_map(|(key, value)| value.map(|bytes| decode(key, &bytes)))
            .collect()
    }

    /// Revenue windows starting in `[from, to)`, oldest first.
    pub async fn revenue(&self, from: i64, to: i64) -> Result<Vec<RevenueWindow>, StoreError> {
        let fields: Vec<String> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(self.keys.revenue_index())
                    .arg(from)
                    .arg(format!("({to}"))
                    .arg("BYSCORE")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(MAX_WINDOWS),
            )
            .await?;
        self.revenue_windows(&fields).await
    }

    /// The newest `count` revenue windows, oldest first.
    pub async fn latest_revenue(&self, count: usize) -> Result<Vec<RevenueWindow>, StoreError> {
        let mut fields: Vec<String> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(self.keys.revenue_index())
                    .arg(0)
                    .arg(count.saturating_sub(1))
                    .arg("REV"),
            )
            .await?;
        fields.reverse();
        self.revenue_windows(&fields).await
    }

    async fn revenue_windows(&self, fields: &[String]) -> Result<Vec<RevenueWindow>, StoreError> {
        if fields.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.keys.revenue_windows();
        let values: Vec<Option<Vec<u8>>> = self
            .query(redis::cmd("HMGET").arg(&key).arg(fields))
            .await?;
        fields
            .iter()
            .zip(values)
            .filter_map(|(field, value)| {
                value.map(|bytes| decode(&format!("{key} field {field}"), &bytes))
            })
            .collect()
    }
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        key: key.to_owned(),
        source,
    })
}
