//! Helpers for the feature-api tests and benchmark: test data written in the processors' key
//! layout (through the same `write_*` plans a processor runs), a feature-api process, and a
//! private redis-server.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use trendstream_events::feature_store::{
    KeySpace, WriteOp, write_alert, write_revenue_window, write_session, write_user_features,
};
use trendstream_events::{
    CategoryRevenue, Currency, FraudAlert, Money, RevenueWindow, SessionSummary, Severity,
    UserFeatures,
};

use crate::process::{Running, workspace_binary};

/// Start of the fixtures' first revenue window (2026-11-23T10:00:00Z).
pub const BASE_MS: i64 = 1_795_428_000_000;
/// Revenue windows in the fixtures, one a minute from [`BASE_MS`].
pub const WINDOWS: i64 = 10;
const MINUTE: i64 = 60_000;

/// What the fixtures hold.
#[derive(Debug, Clone)]
pub struct Fixtures {
    pub features: Vec<UserFeatures>,
    pub sessions: Vec<SessionSummary>,
    pub alerts: Vec<FraudAlert>,
    pub windows: Vec<RevenueWindow>,
}

fn money(text: &str) -> Money {
    Money::from_str(text).unwrap_or(Money::ZERO)
}

fn alert(rule: &str, user: &str, orders: &[&str], ts: i64, severity: Severity) -> FraudAlert {
    let order_ids: Vec<String> = orders.iter().map(|o| (*o).to_owned()).collect();
    let window_start = ts - 4 * MINUTE;
    FraudAlert {
        alert_id: FraudAlert::deterministic_id(rule, user, &order_ids, window_start),
        rule: rule.into(),
        user_id: user.into(),
        order_ids,
        window_start,
        window_end: ts,
        ts,
        severity,
        total_amount: money("15250.00"),
        currency: Currency::TRY,
        details: Some(format!("{} orders", orders.len())),
    }
}

fn session(user: &str, start: i64, minutes: i64) -> SessionSummary {
    let end = start + minutes * MINUTE;
    SessionSummary {
        session_id: SessionSummary::deterministic_id(user, start),
        user_id: user.into(),
        start_ts: start,
        end_ts: end,
        duration_ms: end - start,
        event_count: 12,
        page_views: 5,
        product_views: 4,
        searches: 1,
        cart_adds: 2,
        cart_removes: 0,
        checkouts: 0,
        last_category: Some("books".into()),
        categories: vec!["books".into(), "electronics".into()],
        device: Some("mobile".into()),
    }
}

/// Deterministic data: `user-1` with features, three sessions and two alerts; `user-2` with
/// one alert only; ten revenue windows with `books` and `electronics`.
pub fn fixtures() -> Fixtures {
    let features = vec![UserFeatures {
        user_id: "user-1".into(),
        current_session_length_ms: 90_000,
        session_events: 7,
        views: 5,
        cart_adds: 1,
        last_category: Some("books".into()),
        session_count: 4,
        avg_session_duration_ms: 600_000,
        updated_ts: BASE_MS + 9 * MINUTE,
    }];
    let sessions = vec![
        session("user-1", BASE_MS - 300 * MINUTE, 10),
        session("user-1", BASE_MS - 200 * MINUTE, 20),
        session("user-1", BASE_MS - 100 * MINUTE, 5),
    ];
    let alerts = vec![
        alert(
            "RAPID_ORDERS",
            "user-1",
            &["o-1", "o-2", "o-3"],
            BASE_MS + MINUTE,
            Severity::Medium,
        ),
        alert(
            "HIGH_VALUE_FIRST_ORDER",
            "user-1",
            &["o-4"],
            BASE_MS + 2 * MINUTE,
            Severity::High,
        ),
        alert(
            "HIGH_VALUE_BURST",
            "user-2",
            &["o-5", "o-6", "o-7"],
            BASE_MS + 3 * MINUTE,
            Severity::Critical,
        ),
    ];
    let windows = (0..WINDOWS)
        .map(|i| {
            let books = CategoryRevenue {
                gmv: money(&format!("{}.50", 100 + i * 10)),
                orders: 1 + i,
            };
            let electronics = CategoryRevenue {
                gmv: money(&format!("{}.00", 1000 + i * 250)),
                orders: 2,
            };
            let gmv = books
                .gmv
                .checked_add(electronics.gmv)
                .unwrap_or(Money::ZERO);
            let per_category = BTreeMap::from([
                ("books".to_owned(), books),
                ("electronics".to_owned(), electronics),
            ]);
            let start = BASE_MS + i * MINUTE;
            RevenueWindow::new(
                start,
                start + MINUTE,
                Currency::TRY,
                gmv,
                3 + i,
                per_category,
            )
        })
        .collect();
    Fixtures {
        features,
        sessions,
        alerts,
        windows,
    }
}

/// Every command a processor would run to write the fixtures.
pub fn fixture_writes(keys: &KeySpace, data: &Fixtures) -> anyhow::Result<Vec<WriteOp>> {
    let mut ops = Vec::new();
    for f in &data.features {
        ops.extend(write_user_features(keys, f)?);
    }
    for s in &data.sessions {
        ops.extend(write_session(keys, s)?);
    }
    for a in &data.alerts {
        ops.extend(write_alert(keys, a)?);
    }
    for w in &data.windows {
        ops.extend(write_revenue_window(keys, w)?);
    }
    Ok(ops)
}

/// Runs `ops` in one MULTI/EXEC, as a processor does.
pub async fn apply(
    conn: &mut redis::aio::MultiplexedConnection,
    ops: &[WriteOp],
) -> anyhow::Result<()> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for op in ops {
        let args = op.args();
        let mut cmd = redis::cmd(&args[0]);
        for arg in &args[1..] {
            cmd.arg(arg);
        }
        pipe.add_command(cmd).ignore();
    }
    let () = pipe.query_async(conn).await?;
    Ok(())
}

/// Writes the fixtures under `keys` on the Redis at `url`.
pub async fn seed(url: &str, keys: &KeySpace) -> anyhow::Result<Fixtures> {
    let data = fixtures();
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    apply(&mut conn, &fixture_writes(keys, &data)?).await?;
    Ok(data)
}

/// Deletes every key under the prefix of `keys` (what [`seed`] and the test wrote).
pub async fn remove_all(url: &str, keys: &KeySpace) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let pattern = format!("{}:*", keys.prefix());
    let mut cursor: u64 = 0;
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !found.is_empty() {
            let _: u64 = redis::cmd("DEL").arg(&found).query_async(&mut conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon after).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Where test processes write their logs: `TRENDSTREAM_TEST_LOGS` when set, else the
/// environment's log directory, else the system temp directory.
pub fn log_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TRENDSTREAM_TEST_LOGS") {
        return PathBuf::from(dir);
    }
    crate::TestEnv::load()
        .ok()
        .and_then(|env| env.get("TRENDSTREAM_ENV_DIR").ok().map(PathBuf::from))
        .map_or_else(std::env::temp_dir, |dir| dir.join("logs"))
}

/// Polls `check` every 50 ms until it returns true or `timeout` passes.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("timed out after {timeout:?} waiting for {what}")
}

/// A feature-api process on a free port of 127.0.0.1, killed when dropped.
pub struct FeatureApi {
    pub process: Running,
    /// `http://127.0.0.1:<port>`
    pub base: String,
}

impl FeatureApi {
    /// Starts the binary built beside the test (`cargo build -p feature-api`), reading
    /// `redis_url` under `prefix`, with `extra` flags; returns once /health/live answers.
    /// Logs every request (at debug, with its request id) for the tests to read.
    pub async fn start(redis_url: &str, prefix: &str, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_logging(redis_url, prefix, extra, "info,tower_http=debug").await
    }

    /// [`FeatureApi::start`] with `RUST_LOG` = `log_filter`.
    pub async fn start_logging(
        redis_url: &str,
        prefix: &str,
        extra: &[&str],
        log_filter: &str,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut command = Command::new(workspace_binary("feature-api")?);
        command
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--redis-url", redis_url, "--key-prefix", prefix])
            .args(extra)
            .env("RUST_LOG", log_filter)
            .env("NO_COLOR", "1");
        let log = log_dir().join(format!("feature-api-{prefix}.log"));
        let mut process = Running::start(command, log)?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let live = format!("{base}/health/live");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            process.check_alive()?;
            if let Ok(response) = http.get(&live).send().await
                && response.status().is_success()
            {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "feature-api did not answer {live} within 20 s; log {}",
                process.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self { process, base })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// A redis-server of the test's own on 127.0.0.1:`port`, stopped (by its PID) when dropped.
pub struct OwnRedis {
    pub process: Running,
    pub port: u16,
}

impl OwnRedis {
    /// Starts redis-server (no persistence) and waits until it answers PING.
    pub async fn start(port: u16, dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut command = Command::new("redis-server");
        command.args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]);
        command.current_dir(dir);
        let mut process = Running::start(command, dir.join(format!("redis-{port}.log")))?;
        let url = format!("redis://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            process.check_alive()?;
            if ping(&url).await {
                return Ok(Self { process, port });
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "redis-server on {port} did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

async fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_are_valid_and_their_writes_deterministic() {
        use trendstream_events::Validate;
        let data = fixtures();
        for a in &data.alerts {
            a.validate().unwrap();
            assert_eq!(a.alert_id, a.expected_id());
        }
        for w in &data.windows {
            w.validate().unwrap();
        }
        let keys = KeySpace::new("t");
        assert_eq!(
            fixture_writes(&keys, &data).unwrap(),
            fixture_writes(&keys, &fixtures()).unwrap()
        );
    }
}
