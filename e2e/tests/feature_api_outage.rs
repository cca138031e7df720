//! Redis stopped under a running feature-api: readiness fails and requests get 503 JSON within
//! the request timeout; Redis back: 200 again with no restart. A slow Redis (every client
//! paused) is answered 503 too. Uses a redis-server of the test's own on a free port of
//! 127.0.0.1, stopped by its PID, so the shared test Redis is never touched.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use trendstream_e2e::feature_api::{FeatureApi, OwnRedis, free_port, log_dir, seed, wait_for};
use trendstream_e2e::unique_name;
use trendstream_events::feature_store::KeySpace;

/// Request timeout given to feature-api; a 503 must come before it (plus scheduling slack).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

async fn get(http: &reqwest::Client, url: &str) -> anyhow::Result<(StatusCode, Value, Duration)> {
    let start = Instant::now();
    let response = http.get(url).send().await?;
    let status = response.status();
    let body = response.json().await?;
    Ok((status, body, start.elapsed()))
}

async fn assert_unavailable(http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let (status, body, took) = get(http, url).await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{url}: {body}");
    assert_eq!(body["error"]["code"], "unavailable", "{url}: {body}");
    assert!(
        took < REQUEST_TIMEOUT + Duration::from_millis(500),
        "{url} answered after {took:?}, beyond the request timeout"
    );
    Ok(())
}

#[tokio::test]
async fn redis_down_gives_503_and_recovery_needs_no_restart() -> anyhow::Result<()> {
    let port = free_port()?;
    let dir = log_dir().join(unique_name("fa-outage"));
    let redis = OwnRedis::start(port, &dir).await?;
    let keys = KeySpace::new("outage");
    seed(&redis.url(), &keys).await?;
    let mut api = FeatureApi::start(
        &redis.url(),
        keys.prefix(),
        &["--request-timeout", "1s", "--redis-timeout", "300ms"],
    )
    .await?;
    let pid = api.process.pid();
    let http = reqwest::Client::new();
    let ready = api.url("/health/ready");
    let features = api.url("/api/v1/users/user-1/features");
    assert_eq!(get(&http, &ready).await?.0, StatusCode::OK);
    assert_eq!(get(&http, &features).await?.0, StatusCode::OK);

    println!(
        "stopping redis-server pid {} (port {port})",
        redis.process.pid()
    );
    drop(redis);
    for _ in 0..3 {
        assert_unavailable(&http, &ready).await?;
        assert_unavailable(&http, &features).await?;
        assert_unavailable(&http, &api.url("/api/v1/alerts")).await?;
    }

    let redis = OwnRedis::start(port, &dir).await?;
    println!("redis-server back, pid {}", redis.process.pid());
    seed(&redis.url(), &keys).await?;
    wait_for(
        "readiness after Redis came back",
        Duration::from_secs(15),
        || {
            let (http, ready) = (http.clone(), ready.clone());
            async move { matches!(get(&http, &ready).await, Ok((StatusCode::OK, _, _))) }
        },
    )
    .await?;
    let (status, body, _) = get(&http, &features).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "user-1");
    api.process.check_alive()?;
    assert_eq!(api.process.pid(), pid, "the same process served throughout");

    // Slow: every client paused for longer than the Redis timeout.
    let client = redis::Client::open(redis.url().as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .arg("ALL")
        .query_async(&mut conn)
        .await?;
    assert_unavailable(&http, &features).await?;
    wait_for("answers after the pause", Duration::from_secs(15), || {
        let (http, features) = (http.clone(), features.clone());
        async move { matches!(get(&http, &features).await, Ok((StatusCode::OK, _, _))) }
    })
    .await?;

    let metrics = http.get(api.url("/metrics")).send().await?.text().await?;
    assert!(
        metrics.contains(r#"feature_api_http_request_errors_total{method="GET",route="/health/ready",status="503"}"#),
        "{metrics}"
    );
    Ok(())
}
