//! The Redis feature store: the one definition of the key layout that the processors write and
//! feature-api reads.
//!
//! Every key starts with a prefix ([`DEFAULT_PREFIX`], `ts`, unless a deployment or a test
//! chooses another one through [`KeySpace::new`]). Values are the JSON of the output types in
//! [`crate::output`], written with `serde_json` (so byte-identical on replay).
//!
//! | key | type | content | retention |
//! | --- | --- | --- | --- |
//! | `{p}:user:{user_id}:features` | string | [`UserFeatures`] JSON | [`USER_FEATURES_TTL_SECS`] after the last write |
//! | `{p}:user:{user_id}:sessions` | sorted set | member: [`SessionSummary`] JSON, score: `end_ts` | newest [`SESSIONS_PER_USER`]; [`USER_SESSIONS_TTL_SECS`] after the last write |
//! | `{p}:alerts:user:{user_id}` | sorted set | member: `alert_id`, score: alert `ts` | [`ALERT_TTL_SECS`] after the last write |
//! | `{p}:alerts:all` | sorted set | member: `alert_id`, score: alert `ts` | newest [`ALERTS_ALL_MAX`] |
//! | `{p}:alert:{alert_id}` | string | [`FraudAlert`] JSON | [`ALERT_TTL_SECS`] |
//! | `{p}:revenue:windows` | hash | field: `window_start` (decimal ms), value: [`RevenueWindow`] JSON | see [`REVENUE_RETENTION_MS`] |
//! | `{p}:revenue:index` | sorted set | member and score: `window_start` (decimal ms) | same as the hash |
//!
//! Scores are event-time milliseconds since the Unix epoch. Readers treat an id listed in an
//! alert index whose `{p}:alert:{id}` key has expired as absent.
//!
//! Idempotency: every write replaces, never appends. `SET` replaces a value, `ZADD` of a member
//! already present only moves its score, and `HSET` replaces a field, so replaying the same
//! output after a crash leaves Redis exactly as one write would (the ids are deterministic:
//! [`FraudAlert::deterministic_id`], [`SessionSummary::deterministic_id`], window starts). A
//! session is deduplicated by its JSON bytes, which a replay reproduces.
//!
//! The `write_*` functions return the commands of one write as data ([`WriteOp`]), so that a
//! processor runs them in one `MULTI`/`EXEC` (or a pipeline) with its Redis client, and tests
//! can seed exactly what a processor would write. Revenue retention is the writer's job: it
//! removes windows older than [`REVENUE_RETENTION_MS`] from both keys
//! ([`trim_revenue_before`]).
//!
//! Ids become part of keys: [`valid_id`] is the rule (1 to [`MAX_ID_LEN`] characters of
//! `A-Z a-z 0-9 _ - . : @`, the first a letter or digit), which the API enforces on its path
//! parameters.

use crate::output::{FraudAlert, RevenueWindow, SessionSummary, UserFeatures};

/// The prefix of every key unless configured otherwise.
pub const DEFAULT_PREFIX: &str = "ts";
/// Live features expire this long after the user's last write (one day of inactivity).
pub const USER_FEATURES_TTL_SECS: u64 = 24 * 60 * 60;
/// A user's recent sessions expire this long after the last session closed (30 days).
pub const USER_SESSIONS_TTL_SECS: u64 = 30 * 24 * 60 * 60;
/// Sessions kept per user: the newest by `end_ts`.
pub const SESSIONS_PER_USER: usize = 100;
/// Alerts (their JSON and per-user index) expire this long after they are written (30 days).
pub const ALERT_TTL_SECS: u64 = 30 * 24 * 60 * 60;
/// Alerts kept in the cross-user index `{p}:alerts:all`: the newest by alert time.
pub const ALERTS_ALL_MAX: usize = 10_000;
/// Revenue windows are kept for 7 days of event time.
pub const REVENUE_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Longest id accepted in a key.
pub const MAX_ID_LEN: usize = 128;

/// Whether `id` may be used in a key: 1 to [`MAX_ID_LEN`] characters from
/// `A-Z a-z 0-9 _ - . : @`, the first a letter or digit. Keeps keys printable and free of glob
/// characters, and ids usable as URL path segments (no `.` or `..`).
pub fn valid_id(id: &str) -> bool {
    id.len() <= MAX_ID_LEN
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@'))
}

/// A key prefix (`REDIS_KEY_PREFIX`), checked by [`valid_id`]; the error says the rule. Every
/// service that reads the prefix parses it with this, as a clap value parser.
pub fn parse_prefix(text: &str) -> Result<String, String> {
    if valid_id(text) {
        Ok(text.to_owned())
    } else {
        Err("1 to 128 characters of A-Z a-z 0-9 _ - . : @, the first a letter or digit".into())
    }
}

/// The same rule as [`valid_id`], as a regular expression (for OpenAPI documents).
pub const ID_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$";

/// Key names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpace {
    prefix: String,
}

impl Default for KeySpace {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX)
    }
}

impl KeySpace {
    /// Keys under `prefix` (no trailing colon: `ts` gives `ts:user:...`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{p}:user:{user_id}:features`: [`UserFeatures`] JSON.
    pub fn user_features(&self, user_id: &str) -> String {
        format!("{}:user:{user_id}:features", self.prefix)
    }

    /// `{p}:user:{user_id}:sessions`: sorted set of [`SessionSummary`] JSON by `end_ts`.
    pub fn user_sessions(&self, user_id: &str) -> String {
        format!("{}:user:{user_id}:sessions", self.prefix)
    }

    /// `{p}:alerts:user:{user_id}`: sorted set of alert ids by alert time.
    pub fn user_alerts(&self, user_id: &str) -> String {
        format!("{}:alerts:user:{user_id}", self.prefix)
    }

    /// `{p}:alerts:all`: sorted set of every user's alert ids by alert time.
    pub fn alerts_all(&self) -> String {
        format!("{}:alerts:all", self.prefix)
    }

    /// `{p}:alert:{alert_id}`: [`FraudAlert`] JSON.
    pub fn alert(&self, alert_id: &str) -> String {
        format!("{}:alert:{alert_id}", self.prefix)
    }

    /// `{p}:revenue:windows`: hash of [`RevenueWindow`] JSON by window start.
    pub fn revenue_windows(&self) -> String {
        format!("{}:revenue:windows", self.prefix)
    }

    /// `{p}:revenue:index`: sorted set of window starts.
    pub fn revenue_index(&self) -> String {
        format!("{}:revenue:index", self.prefix)
    }
}

/// The hash field (and index member) of a revenue window: its start in decimal milliseconds.
pub fn revenue_field(window_start: i64) -> String {
    window_start.to_string()
}

/// One Redis command of a write, as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// `SET key value EX ttl_secs`
    SetEx {
        key: String,
        value: String,
        ttl_secs: u64,
    },
    /// `ZADD key score member`
    ZAdd {
        key: String,
        score: i64,
        member: String,
    },
    /// `ZREMRANGEBYRANK key 0 -(keep+1)`: keeps the `keep` highest-scored members.
    ZKeepNewest { key: String, keep: usize },
    /// `ZREMRANGEBYSCORE key -inf (before`: removes members scored below `before`.
    /// Removes the members of sorted set `index` scored below `before` and the fields of the
    /// same names from hash `hash`, atomically (one Lua script): an index and the hash it lists.
    TrimIndexedBefore {
        index: String,
        hash: String,
        before: i64,
    },
    /// `HSET key field value`
    HSet {
        key: String,
        field: String,
        value: String,
    },
    /// `EXPIRE key ttl_secs`
    Expire { key: String, ttl_secs: u64 },
}

impl WriteOp {
    /// The command's words, ready for any Redis client (`redis::cmd(&args[0]).arg(&args[1..])`).
    pub fn args(&self) -> Vec<String> {
        match self {
            WriteOp::SetEx {
                key,
                value,
                ttl_secs,
            } => vec![
                "SET".into(),
                key.clone(),
                value.clone(),
                "EX".into(),
                ttl_secs.to_string(),
            ],
            WriteOp::ZAdd { key, score, member } => {
                vec![
                    "ZADD".into(),
                    key.clone(),
                    score.to_string(),
                    member.clone(),
                ]
            }
            WriteOp::ZKeepNewest { key, keep } => vec![
                "ZREMRANGEBYRANK".into(),
                key.clone(),
                "0".into(),
                format!("-{}", keep.saturating_add(1)),
            ],
            WriteOp::TrimIndexedBefore {
                index,
                hash,
                before,
            } => vec![
                "EVAL".into(),
                TRIM_INDEXED_BEFORE_LUA.into(),
                "2".into(),
                index.clone(),
                hash.clone(),
                before.to_string(),
            ],
            WriteOp::HSet { key, field, value } => {
                vec!["HSET".into(), key.clone(), field.clone(), value.clone()]
            }
            WriteOp::Expire { key, ttl_secs } => {
                vec!["EXPIRE".into(), key.clone(), ttl_secs.to_string()]
            }
        }
    }
}

/// Why a value could not be encoded for the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreEncodeError {
    /// An id is not usable in a key (see [`valid_id`]).
    #[error(
        "{field} {value:?} cannot be used in a key: 1 to 128 characters of A-Z a-z 0-9 _ - . : @, the first a letter or digit"
    )]
    InvalidId { field: &'static str, value: String },
    /// JSON encoding failed.
    #[error("encoding {what} as JSON: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
}

fn checked_id(field: &'static str, value: &str) -> Result<(), StoreEncodeError> {
    if valid_id(value) {
        Ok(())
    } else {
        Err(StoreEncodeError::InvalidId {
            field,
            value: crate::time::snippet(value),
        })
    }
}

fn json<T: serde::Serialize>(what: &'static str, value: &T) -> Result<String, StoreEncodeError> {
    serde_json::to_string(value).map_err(|source| StoreEncodeError::Json { what, source })
}

/// The write of a user's live features (replaces the previous value, renews the TTL).
pub fn write_user_features(
    keys: &KeySpace,
    features: &UserFeatures,
) -> Result<Vec<WriteOp>, StoreEncodeError> {
    checked_id("user_id", &features.user_id)?;
    Ok(vec![WriteOp::SetEx {
        key: keys.user_features(&features.user_id),
        value: json("UserFeatures", features)?,
        ttl_secs: USER_FEATURES_TTL_SECS,
    }])
}

/// The write of a closed session: added to the user's sorted set, which keeps the newest
/// [`SESSIONS_PER_USER`].
pub fn write_session(
    keys: &KeySpace,
    session: &SessionSummary,
) -> Result<Vec<WriteOp>, StoreEncodeError> {
    checked_id("user_id", &session.user_id)?;
    let key = keys.user_sessions(&session.user_id);
    Ok(vec![
        WriteOp::ZAdd {
            key: key.clone(),
            score: session.end_ts,
            member: json("SessionSummary", session)?,
        },
        WriteOp::ZKeepNewest {
            key: key.clone(),
            keep: SESSIONS_PER_USER,
        },
        WriteOp::Expire {
            key,
            ttl_secs: USER_SESSIONS_TTL_SECS,
        },
    ])
}

/// The write of a fraud alert: its JSON, and its id in the user's and the cross-user index.
pub fn write_alert(keys: &KeySpace, alert: &FraudAlert) -> Result<Vec<WriteOp>, StoreEncodeError> {
    checked_id("alert_id", &alert.alert_id)?;
    checked_id("user_id", &alert.user_id)?;
    let user_index = keys.user_alerts(&alert.user_id);
    Ok(vec![
        WriteOp::SetEx {
            key: keys.alert(&alert.alert_id),
            value: json("FraudAlert", alert)?,
            ttl_secs: ALERT_TTL_SECS,
        },
        WriteOp::ZAdd {
            key: user_index.clone(),
            score: alert.ts,
            member: alert.alert_id.clone(),
        },
        WriteOp::Expire {
            key: user_index,
            ttl_secs: ALERT_TTL_SECS,
        },
        WriteOp::ZAdd {
            key: keys.alerts_all(),
            score: alert.ts,
            member: alert.alert_id.clone(),
        },
        WriteOp::ZKeepNewest {
            key: keys.alerts_all(),
            keep: ALERTS_ALL_MAX,
        },
    ])
}

/// The write of a revenue window (an update of the same window replaces it).
pub fn write_revenue_window(
    keys: &KeySpace,
    window: &RevenueWindow,
) -> Result<Vec<WriteOp>, StoreEncodeError> {
    let field = revenue_field(window.window_start);
    Ok(vec![
        WriteOp::HSet {
            key: keys.revenue_windows(),
            field: field.clone(),
            value: json("RevenueWindow", window)?,
        },
        WriteOp::ZAdd {
            key: keys.revenue_index(),
            score: window.window_start,
            member: field,
        },
    ])
}

/// Removes the windows that start before `before` (event-time ms) from the index and the hash,
/// in one script, so the two never disagree. Idempotent: a replay removes nothing more.
pub fn trim_revenue_before(keys: &KeySpace, before: i64) -> WriteOp {
    WriteOp::TrimIndexedBefore {
        index: keys.revenue_index(),
        hash: keys.revenue_windows(),
        before,
    }
}

/// KEYS[1] = index (sorted set), KEYS[2] = hash, ARGV[1] = exclusive upper score bound.
/// HDEL in slices: Lua's unpack has a stack limit.
const TRIM_INDEXED_BEFORE_LUA: &str = "\
local bound = '(' .. ARGV[1]
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', bound)
for i = 1, #members, 1000 do
  redis.call('HDEL', KEYS[2], unpack(members, i, math.min(i + 999, #members)))
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', bound)
return #members";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::{Currency, Money};
    use crate::output::Severity;
    use std::collections::BTreeMap;

    fn alert() -> FraudAlert {
        let order_ids = vec!["o1".to_owned(), "o2".to_owned()];
        FraudAlert {
            alert_id: FraudAlert::deterministic_id("RAPID_ORDERS", "u1", &order_ids, 1_000),
            rule: "RAPID_ORDERS".into(),
            user_id: "u1".into(),
            order_ids,
            window_start: 1_000,
            window_end: 301_000,
            ts: 2_000,
            severity: Severity::High,
            total_amount: Money::ZERO,
            currency: Currency::TRY,
            details: None,
        }
    }

    #[test]
    fn keys_follow_the_documented_layout() {
        let k = KeySpace::default();
        assert_eq!(k.user_features("u1"), "ts:user:u1:features");
        assert_eq!(k.user_sessions("u1"), "ts:user:u1:sessions");
        assert_eq!(k.user_alerts("u1"), "ts:alerts:user:u1");
        assert_eq!(k.alerts_all(), "ts:alerts:all");
        assert_eq!(k.alert("a1"), "ts:alert:a1");
        assert_eq!(k.revenue_windows(), "ts:revenue:windows");
        assert_eq!(k.revenue_index(), "ts:revenue:index");
        assert_eq!(KeySpace::new("t9").alerts_all(), "t9:alerts:all");
    }

    #[test]
    fn ids_are_checked_before_they_become_keys() {
        for ok in ["u1", "user_42", "a.b-c:d@e", &"x".repeat(128)] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a*",
            "a/b",
            "ü",
            &"x".repeat(129),
            "a\nb",
            ".",
            "..",
            "-a",
        ] {
            assert!(!valid_id(bad), "{bad:?}");
        }
        let mut a = alert();
        a.user_id = "bad user".into();
        let err = write_alert(&KeySpace::default(), &a).unwrap_err();
        assert!(err.to_string().contains("user_id"), "{err}");
    }

    #[test]
    fn alert_write_is_the_same_commands_every_time() {
        let keys = KeySpace::default();
        let a = alert();
        let first = write_alert(&keys, &a).unwrap();
        assert_eq!(
            first,
            write_alert(&keys, &a).unwrap(),
            "replay writes the same"
        );
        let args: Vec<Vec<String>> = first.iter().map(WriteOp::args).collect();
        assert_eq!(args[0][0], "SET");
        assert_eq!(args[0][1], format!("ts:alert:{}", a.alert_id));
        assert_eq!(args[0][3..], ["EX".to_owned(), ALERT_TTL_SECS.to_string()]);
        assert_eq!(
            args[1],
            ["ZADD", "ts:alerts:user:u1", "2000", a.alert_id.as_str()]
        );
        assert_eq!(args[4], ["ZREMRANGEBYRANK", "ts:alerts:all", "0", "-10001"]);
        let decoded: FraudAlert = serde_json::from_str(&args[0][2]).unwrap();
        assert_eq!(decoded, a);
    }

    #[test]
    fn revenue_and_session_writes_are_keyed_by_their_window() {
        let keys = KeySpace::new("p");
        let w = RevenueWindow::new(
            60_000,
            120_000,
            Currency::TRY,
            Money::ZERO,
            0,
            BTreeMap::new(),
        );
        let ops = write_revenue_window(&keys, &w).unwrap();
        assert_eq!(ops[0].args()[..3], ["HSET", "p:revenue:windows", "60000"]);
        assert_eq!(ops[1].args(), ["ZADD", "p:revenue:index", "60000", "60000"]);
        let trim = trim_revenue_before(&keys, 5).args();
        assert_eq!(trim[0], "EVAL");
        assert_eq!(
            trim[2..],
            ["2", "p:revenue:index", "p:revenue:windows", "5"]
        );
        let session = SessionSummary {
            session_id: SessionSummary::deterministic_id("u1", 10),
            user_id: "u1".into(),
            start_ts: 10,
            end_ts: 20,
            duration_ms: 10,
            event_count: 2,
            page_views: 1,
            product_views: 1,
            searches: 0,
            cart_adds: 0,
            cart_removes: 0,
            checkouts: 0,
            last_category: None,
            categories: vec![],
            device: None,
        };
        let ops = write_session(&keys, &session).unwrap();
        assert_eq!(ops[0].args()[..3], ["ZADD", "p:user:u1:sessions", "20"]);
        assert_eq!(ops[1].args()[3], "-101");
    }
}
