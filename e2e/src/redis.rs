//! Redis helpers: everything under a key prefix, for comparing with an oracle.

use std::collections::BTreeMap;

/// The keys under a prefix, by type.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dump {
    pub strings: BTreeMap<String, String>,
    /// Members with scores in `ZRANGE` order.
    pub sorted_sets: BTreeMap<String, Vec<(String, i64)>>,
    pub hashes: BTreeMap<String, BTreeMap<String, String>>,
    /// `TTL` of every key (-1: none).
    pub ttls: BTreeMap<String, i64>,
}

/// Reads every key matching `{prefix}:*` (fails on a type it does not know).
pub async fn dump(url: &str, prefix: &str) -> anyhow::Result<Dump> {
    let client = redis::Client::open(url)?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut redis)
        .await?;
    let mut out = Dump::default();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut redis).await?;
        let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut redis).await?;
        out.ttls.insert(key.clone(), ttl);
        match kind.as_str() {
            "string" => {
                let value: String = redis::cmd("GET").arg(&key).query_async(&mut redis).await?;
                out.strings.insert(key, value);
            }
            "zset" => {
                let members: Vec<(String, i64)> = redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(&mut redis)
                    .await?;
                out.sorted_sets.insert(key, members);
            }
            "hash" => {
                let fields: BTreeMap<String, String> = redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(&mut redis)
                    .await?;
                out.hashes.insert(key, fields);
            }
            other => anyhow::bail!("unexpected Redis type {other} of {key}"),
        }
    }
    Ok(out)
}
