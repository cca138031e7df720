//! feature-api's access guard against a real Redis: a bearer token on every route but the
//! probes and /metrics (the token never in the log), and load shedding: beyond
//! `--max-concurrent-requests` a request is answered 503 `overloaded` at once instead of
//! queueing behind a slow Redis, while the liveness probe still answers. Uses a redis-server of
//! the test's own (stopped by its PID), so the shared test Redis is never paused.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use trendstream_e2e::feature_api::{FeatureApi, OwnRedis, free_port, log_dir, seed};
use trendstream_e2e::unique_name;
use trendstream_events::feature_store::KeySpace;

const TOKEN: &str = "e2e-token-0123456789-abcdef";

async fn get(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> anyhow::Result<(StatusCode, Value, Duration)> {
    let start = Instant::now();
    let mut request = http.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, body, start.elapsed()))
}

#[tokio::test]
async fn a_token_guards_the_api_and_overload_is_shed_while_probes_answer() -> anyhow::Result<()> {
    let port = free_port()?;
    let dir = log_dir().join(unique_name("fa-access"));
    let redis = OwnRedis::start(port, &dir).await?;
    let keys = KeySpace::new("access");
    seed(&redis.url(), &keys).await?;
    let api = FeatureApi::start(
        &redis.url(),
        keys.prefix(),
        &[
            "--auth-token",
            TOKEN,
            "--max-concurrent-requests",
            "2",
            "--request-timeout",
            "3s",
            "--redis-timeout",
            "2500ms",
        ],
    )
    .await?;
    let http = reqwest::Client::new();
    let features = api.url("/api/v1/users/user-1/features");

    // The token.
    let response = http.get(&features).send().await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response
            .headers()
            .get("www-authenticate")
            .map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    let body: Value = response.json().await?;
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    let (status, _, _) = get(&http, &features, Some("e2e-token-0123456789-abcdeX")).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a wrong token");
    let (status, body, _) = get(&http, &features, Some(TOKEN)).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "user-1");
    for open in ["/health/live", "/health/ready", "/metrics"] {
        let status = http.get(api.url(open)).send().await?.status();
        assert_eq!(status, StatusCode::OK, "{open} needs no token");
    }

    // Overload: every Redis client paused, so the two permitted requests wait; the others are
    // shed at once, and the liveness probe answers throughout.
    let client = redis::Client::open(redis.url().as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(2000)
        .arg("ALL")
        .query_async(&mut conn)
        .await?;
    let mut requests = Vec::new();
    for i in 0..8 {
        let (http, url) = (
            http.clone(),
            api.url(&format!("/api/v1/users/user-{}/features", i % 3 + 1)),
        );
        requests.push(tokio::spawn(
            async move { get(&http, &url, Some(TOKEN)).await },
        ));
        // The first two take the permits before the rest arrive.
        if i < 2 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (live, _, live_took) = get(&http, &api.url("/health/live"), None).await?;
    let mut shed = 0;
    let mut served = 0;
    for request in requests {
        let (status, body, took) = request.await??;
        match body["error"]["code"].as_str() {
            Some("overloaded") => {
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
                assert!(took < Duration::from_millis(500), "shed after {took:?}");
                shed += 1;
            }
            _ => {
                assert!(
                    status == StatusCode::OK || status == StatusCode::NOT_FOUND,
                    "{status} {body}"
                );
                served += 1;
            }
        }
    }
    println!(
        "overload: {served} served after the pause, {shed} shed at once; live in {live_took:?}"
    );
    assert_eq!((served, shed), (2, 6));
    assert_eq!(live, StatusCode::OK);
    assert!(
        live_took < Duration::from_millis(500),
        "live took {live_took:?}"
    );

    // Redis down: the 503 says the store is unavailable, not where it is or what it said.
    drop(redis);
    let (status, body, _) = get(&http, &features, Some(TOKEN)).await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let text = body.to_string();
    assert!(
        !text.contains(&port.to_string())
            && !text.contains("127.0.0.1")
            && !text.to_lowercase().contains("refused"),
        "the client sees no Redis detail: {text}"
    );

    let log = std::fs::read_to_string(&api.process.log)?;
    assert!(!log.contains(TOKEN), "the token is in the log");
    assert!(
        log.contains("feature store unavailable"),
        "the detail is logged"
    );
    Ok(())
}
