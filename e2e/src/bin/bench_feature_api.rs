//! Benchmark of feature-api's features endpoint against Redis's own GET, in one run:
//!
//! 1. a private redis-server on a free port of 127.0.0.1, holding the fixtures in the
//!    processors' key layout;
//! 2. feature-api (release build, beside this binary) reading it;
//! 3. `redis-benchmark` GET of the very key the endpoint reads, and `wrk` on the endpoint,
//!    both closed-loop at the same connection count: rps and p99 of both, and the ratio;
//! 4. `wrk --latency` at rising connection counts, to find the count that gives ~10k rps
//!    (closed loop: each connection sends its next request when the answer arrives);
//! 5. a fixed-rate client in the wrk2 model (this binary, on one thread, 16 connections:
//!    10 000 requests a second for 10 s on a fixed schedule, latency corrected for coordinated
//!    omission): achieved rate and p50/p99/max.
//!
//! Run: `make bench-feature-api` (builds release binaries first). Nothing leaves 127.0.0.1;
//! every loop is bounded in count and time.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use trendstream_e2e::feature_api::{FeatureApi, OwnRedis, free_port, seed};
use trendstream_e2e::unique_name;
use trendstream_events::feature_store::KeySpace;

/// Connections of the max-throughput comparison (wrk and redis-benchmark alike).
const CONNECTIONS: u32 = 50;
const WRK_SECONDS: u32 = 10;
const SWEEP: [u32; 6] = [1, 2, 4, 8, 16, 32];
const SWEEP_SECONDS: u32 = 5;
const TARGET_RPS: u64 = 10_000;
const FIXED_RATE_SECONDS: u64 = 10;
/// Connections of the fixed-rate client.
const FIXED_RATE_CONNECTIONS: u64 = 16;

#[derive(Debug, Clone, Copy)]
struct Run {
    rps: f64,
    p99_ms: f64,
}

fn run(command: &mut Command) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// wrk's duration with unit (`512.00us`, `1.20ms`, `2.00s`) in milliseconds.
fn wrk_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    match unit {
        "us" => Some(value / 1000.0),
        "ms" => Some(value),
        "s" => Some(value * 1000.0),
        "m" => Some(value * 60_000.0),
        _ => None,
    }
}

fn parse_wrk(out: &str) -> anyhow::Result<Run> {
    let rps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no Requests/sec in wrk output:\n{out}"))?;
    let p99_ms = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .and_then(|v| wrk_ms(v.trim()))
        .ok_or_else(|| anyhow::anyhow!("no 99% latency in wrk output:\n{out}"))?;
    let errors = out
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"));
    anyhow::ensure!(errors.is_none(), "wrk saw errors: {errors:?}\n{out}");
    Ok(Run { rps, p99_ms })
}

fn wrk(url: &str, connections: u32, seconds: u32) -> anyhow::Result<Run> {
    let threads = connections.min(2);
    parse_wrk(&run(Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg(url))?)
}

/// redis-benchmark's CSV: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",
/// "p95_latency_ms","p99_latency_ms","max_latency_ms".
fn redis_benchmark(port: u16, key: &str, connections: u32, requests: u32) -> anyhow::Result<Run> {
    let out = run(Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", &connections.to_string(), "-n", &requests.to_string()])
        .args(["--csv", "GET", key]))?;
    let row = out
        .lines()
        .find(|l| !l.starts_with("\"test\""))
        .ok_or_else(|| anyhow::anyhow!("no result row in redis-benchmark output:\n{out}"))?;
    let fields: Vec<f64> = row
        .split(',')
        .skip(1)
        .filter_map(|f| f.trim_matches('"').parse().ok())
        .collect();
    anyhow::ensure!(fields.len() >= 6, "unexpected redis-benchmark row {row}");
    Ok(Run {
        rps: fields[0],
        p99_ms: fields[5],
    })
}

struct FixedRate {
    sent: u64,
    ok: u64,
    achieved_rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// Fixed rate, the wrk2 model: `FIXED_RATE_CONNECTIONS` keep-alive connections share the
/// schedule (request i is due at start + i/rate, taken by connection i mod N). A connection
/// sends each request when it is due, or at once if its previous answer came late; latency is
/// measured from the due time when the request went out late (so a stalled server is charged
/// for the whole wait: no coordinated omission), else from the send (the 1 ms timer's lag is the
/// client's, not the server's).
async fn fixed_rate(url: &str, rate: u64, seconds: u64) -> anyhow::Result<FixedRate> {
    let total = rate * seconds;
    let connections = FIXED_RATE_CONNECTIONS;
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..connections {
        let url = url.to_owned();
        // One client per connection: its pool then holds exactly one keep-alive connection.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(5))
            .build()?;
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity((total / connections + 1) as usize);
            let mut failed = 0u64;
            let mut i = k;
            while i < total {
                let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                let late = Instant::now() > due;
                tokio::time::sleep_until(due.into()).await;
                let sent = Instant::now();
                let ok = match http.get(&url).send().await {
                    Ok(response) => {
                        response.status().is_success() && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                if ok {
                    latencies.push(if late { due } else { sent }.elapsed());
                } else {
                    failed += 1;
                }
                i += connections;
            }
            (latencies, failed)
        });
    }
    let mut all = Vec::with_capacity(total as usize);
    let mut failed = 0;
    while let Some(done) = tasks.join_next().await {
        let (latencies, errors) = done?;
        all.extend(latencies);
        failed += errors;
    }
    let elapsed = start.elapsed();
    all.sort();
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(FixedRate {
        sent: all.len() as u64 + failed,
        ok: all.len() as u64,
        achieved_rps: (all.len() as u64 + failed) as f64 / elapsed.as_secs_f64(),
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
        max_ms: all.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0),
    })
}

/// The 1, 5 and 15 minute load averages: other work on the same cores skews the figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(unique_name("bench-feature-api"));
    let port = free_port()?;
    let redis = OwnRedis::start(port, &dir).await?;
    let keys = KeySpace::new("bench");
    seed(&redis.url(), &keys).await?;
    let api = FeatureApi::start_logging(&redis.url(), keys.prefix(), &[], "warn").await?;
    let url = api.url("/api/v1/users/user-1/features");
    let key = keys.user_features("user-1");
    println!(
        "redis-server 127.0.0.1:{port}, feature-api {}, key {key}",
        api.base
    );
    println!(
        "machine: {} cores, load average at start: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );

    wrk(&url, CONNECTIONS, 2)?; // warm-up

    let redis_run = redis_benchmark(port, &key, CONNECTIONS, 1_000_000)?;
    let api_run = wrk(&url, CONNECTIONS, WRK_SECONDS)?;
    println!("\n== closed loop, {CONNECTIONS} connections ==");
    println!(
        "redis-benchmark GET {key}: {:>9.0} rps  p99 {:.3} ms",
        redis_run.rps, redis_run.p99_ms
    );
    println!(
        "wrk GET features endpoint:      {:>9.0} rps  p99 {:.3} ms",
        api_run.rps, api_run.p99_ms
    );
    println!(
        "ratio feature-api / redis GET: {:.2} (target >= 0.5)",
        api_run.rps / redis_run.rps
    );

    println!("\n== wrk --latency, {SWEEP_SECONDS} s per connection count ==");
    let mut near = None;
    for connections in SWEEP {
        let r = wrk(&url, connections, SWEEP_SECONDS)?;
        println!(
            "connections {connections:>3}: {:>9.0} rps  p99 {:.3} ms",
            r.rps, r.p99_ms
        );
        if near.is_none() && r.rps >= TARGET_RPS as f64 {
            near = Some((connections, r));
        }
    }
    match near {
        Some((c, r)) => println!(
            "first count at >= {TARGET_RPS} rps: {c} connections, {:.0} rps, p99 {:.3} ms (target <= 5 ms)",
            r.rps, r.p99_ms
        ),
        None => println!("no connection count reached {TARGET_RPS} rps"),
    }

    println!(
        "\n== fixed rate {TARGET_RPS} rps for {FIXED_RATE_SECONDS} s, {FIXED_RATE_CONNECTIONS} connections (wrk2 model) =="
    );
    // The client runs on one thread of its own, so that it adds one runnable thread, not a
    // second thread pool, to the 2 cores feature-api and redis-server run on.
    let client_url = url.clone();
    let f = tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(fixed_rate(&client_url, TARGET_RPS, FIXED_RATE_SECONDS))
    })
    .await??;
    println!(
        "sent {} ({:.0} rps), ok {}, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (target p99 <= 5 ms)",
        f.sent, f.achieved_rps, f.ok, f.p50_ms, f.p99_ms, f.max_ms
    );
    println!("load average at the end: {}", load_average());
    drop(api);
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_and_its_units() {
        assert_eq!(wrk_ms("512.00us"), Some(0.512));
        assert_eq!(wrk_ms("1.20ms"), Some(1.2));
        assert_eq!(wrk_ms("2.00s"), Some(2000.0));
        let out = "  Latency Distribution\n     50%  100.00us\n     99%    1.50ms\nRequests/sec:  12345.67\n";
        let r = parse_wrk(out).unwrap();
        assert_eq!((r.rps, r.p99_ms), (12345.67, 1.5));
    }
}
