//! feature-api against the real Redis of the test environment, holding data written in the
//! processors' key layout (`trendstream_events::feature_store`) under a key prefix of this
//! test's own, so tests sharing the Redis never see each other's keys.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use trendstream_e2e::feature_api::{
    BASE_MS, FeatureApi, Fixtures, WINDOWS, apply, fixture_writes, remove_all, seed,
};
use trendstream_e2e::{TestEnv, unique_name};
use trendstream_events::feature_store::KeySpace;
use trendstream_events::{FraudAlert, SessionSummary, UserFeatures};

struct Setup {
    api: FeatureApi,
    data: Fixtures,
    keys: KeySpace,
    redis_url: String,
    http: reqwest::Client,
}

async fn setup(extra: &[&str]) -> anyhow::Result<Setup> {
    let env = TestEnv::load()?;
    let redis_url = env.get("REDIS_URL")?.to_owned();
    let prefix = unique_name("fa").replace('-', "_");
    let keys = KeySpace::new(prefix.clone());
    let data = seed(&redis_url, &keys).await?;
    let api = FeatureApi::start(&redis_url, &prefix, extra).await?;
    println!(
        "feature-api at {} over {redis_url}, prefix {prefix}",
        api.base
    );
    Ok(Setup {
        api,
        data,
        keys,
        redis_url,
        http: reqwest::Client::new(),
    })
}

impl Setup {
    /// Removes the test's keys from the shared Redis.
    async fn finish(self) -> anyhow::Result<()> {
        remove_all(&self.redis_url, &self.keys).await
    }

    async fn get(&self, path: &str) -> anyhow::Result<(StatusCode, Value)> {
        let response = self.http.get(self.api.url(path)).send().await?;
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        anyhow::ensure!(
            content_type.starts_with("application/json"),
            "{path}: content-type {content_type:?}"
        );
        Ok((status, response.json().await?))
    }

    /// Asserts a 400 whose JSON error names `parameter`.
    async fn bad_request(&self, path: &str, parameter: &str) -> anyhow::Result<()> {
        let (status, body) = self.get(path).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{path}: {body}");
        assert_eq!(body["error"]["parameter"], parameter, "{path}: {body}");
        Ok(())
    }
}

#[tokio::test]
async fn serves_what_the_processors_wrote() -> anyhow::Result<()> {
    let s = setup(&[]).await?;

    let (status, body) = s.get("/api/v1/users/user-1/features").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let features: UserFeatures = serde_json::from_value(body)?;
    assert_eq!(features, s.data.features[0]);

    let (status, body) = s.get("/api/v1/users/user-1/sessions?limit=2").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sessions: Vec<SessionSummary> = serde_json::from_value(body["sessions"].clone())?;
    let newest: Vec<&SessionSummary> = s.data.sessions.iter().rev().take(2).collect();
    assert_eq!(sessions.iter().collect::<Vec<_>>(), newest, "newest first");

    let alerts = |body: &Value| -> anyhow::Result<Vec<String>> {
        let list: Vec<FraudAlert> = serde_json::from_value(body["alerts"].clone())?;
        Ok(list.into_iter().map(|a| a.alert_id).collect())
    };
    let id = |i: usize| s.data.alerts[i].alert_id.clone();
    let (status, body) = s.get("/api/v1/users/user-1/alerts").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        alerts(&body)?,
        [id(1), id(0)],
        "user-1's alerts, newest first"
    );
    let (_, body) = s.get("/api/v1/alerts").await?;
    assert_eq!(
        alerts(&body)?,
        [id(2), id(1), id(0)],
        "all users, newest first"
    );
    let (_, body) = s.get("/api/v1/alerts?limit=2").await?;
    assert_eq!(alerts(&body)?, [id(2), id(1)]);
    let since = s.data.alerts[1].ts;
    let (_, body) = s.get(&format!("/api/v1/alerts?since={since}")).await?;
    assert_eq!(alerts(&body)?, [id(2), id(1)], "since is inclusive");
    let (status, body) = s.get("/api/v1/users/user-2/sessions").await?;
    assert_eq!(
        status,
        StatusCode::OK,
        "user-2 is known by its alert: {body}"
    );
    assert_eq!(body["sessions"], Value::Array(vec![]));

    let to = BASE_MS + WINDOWS * 60_000;
    let (status, body) = s
        .get(&format!("/api/v1/revenue?from={BASE_MS}&to={to}"))
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let points = body["points"].as_array().cloned().unwrap_or_default();
    assert_eq!(points.len(), s.data.windows.len(), "{body}");
    assert_eq!(points[0]["window_start"], BASE_MS);
    assert_eq!(points[0]["gmv"], s.data.windows[0].gmv.to_string());
    let (_, body) = s
        .get(&format!(
            "/api/v1/revenue?from={}&to={to}&category=books",
            BASE_MS + 60_000
        ))
        .await?;
    assert_eq!(body["category"], "books");
    let points = body["points"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        points.len(),
        s.data.windows.len() - 1,
        "from is inclusive: {body}"
    );
    let books = &s.data.windows[1].per_category["books"];
    assert_eq!(points[0]["gmv"], books.gmv.to_string());
    assert_eq!(points[0]["orders"], books.orders);
    s.finish().await
}

#[tokio::test]
async fn rejects_bad_input_with_400_naming_the_parameter_and_unknown_users_with_404()
-> anyhow::Result<()> {
    let s = setup(&[]).await?;
    s.bad_request("/api/v1/users/bad%20id/features", "user_id")
        .await?;
    s.bad_request("/api/v1/users/..%2Fx/sessions", "user_id")
        .await?;
    s.bad_request(
        &format!("/api/v1/users/{}/alerts", "x".repeat(129)),
        "user_id",
    )
    .await?;
    s.bad_request("/api/v1/users/user-1/sessions?limit=0", "limit")
        .await?;
    s.bad_request("/api/v1/alerts?limit=1001", "limit").await?;
    s.bad_request("/api/v1/alerts?limit=ten", "limit").await?;
    s.bad_request("/api/v1/alerts?since=-1", "since").await?;
    s.bad_request("/api/v1/revenue?from=10&to=5", "from")
        .await?;
    s.bad_request("/api/v1/revenue?from=0&to=86400001", "from")
        .await?;
    s.bad_request("/api/v1/revenue?to=soon", "to").await?;
    for path in [
        "/api/v1/users/nobody/features",
        "/api/v1/users/nobody/sessions",
        "/api/v1/users/nobody/alerts",
        "/api/v1/no-such-route",
    ] {
        let (status, body) = s.get(path).await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
    s.finish().await
}

#[tokio::test]
async fn rewriting_the_same_outputs_replaces_and_never_duplicates() -> anyhow::Result<()> {
    let s = setup(&[]).await?;
    let client = redis::Client::open(s.redis_url.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let writes = fixture_writes(&s.keys, &s.data)?;
    // A replay after a crash writes everything again, twice for good measure.
    apply(&mut conn, &writes).await?;
    apply(&mut conn, &writes).await?;
    let count = |key: String| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("ZCARD")
                .arg(key)
                .query_async::<u64>(&mut conn)
                .await
        }
    };
    assert_eq!(count(s.keys.alerts_all()).await?, 3);
    assert_eq!(count(s.keys.user_alerts("user-1")).await?, 2);
    assert_eq!(count(s.keys.user_sessions("user-1")).await?, 3);
    assert_eq!(count(s.keys.revenue_index()).await?, WINDOWS as u64);
    let fields: u64 = redis::cmd("HLEN")
        .arg(s.keys.revenue_windows())
        .query_async(&mut conn)
        .await?;
    assert_eq!(fields, WINDOWS as u64);
    let (_, body) = s.get("/api/v1/alerts").await?;
    assert_eq!(body["alerts"].as_array().map(Vec::len), Some(3));
    let (_, body) = s.get("/api/v1/users/user-1/sessions").await?;
    assert_eq!(body["sessions"].as_array().map(Vec::len), Some(3));
    s.finish().await
}

#[tokio::test]
async fn red_metrics_per_route_request_ids_and_cors() -> anyhow::Result<()> {
    let s = setup(&["--cors-origins", "https://shop.example"]).await?;
    let response = s
        .http
        .get(s.api.url("/api/v1/users/user-1/features"))
        .header("x-request-id", "test-request-7")
        .header("origin", "https://shop.example")
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("x-request-id").as_deref(), Some("test-request-7"));
    assert_eq!(
        header("access-control-allow-origin").as_deref(),
        Some("https://shop.example")
    );
    let generated = s.http.get(s.api.url("/api/v1/alerts")).send().await?;
    assert!(
        generated.headers().contains_key("x-request-id"),
        "an id is made when the client sends none"
    );
    let other = s
        .http
        .get(s.api.url("/api/v1/alerts"))
        .header("origin", "https://evil.example")
        .send()
        .await?;
    assert!(!other.headers().contains_key("access-control-allow-origin"));
    s.get("/api/v1/users/nobody/features").await?;
    s.get("/api/v1/alerts?limit=0").await?;

    let metrics = s
        .http
        .get(s.api.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    for line in [
        r#"feature_api_http_requests_total{method="GET",route="/api/v1/users/{user_id}/features",status="200"} 1"#,
        r#"feature_api_http_requests_total{method="GET",route="/api/v1/users/{user_id}/features",status="404"} 1"#,
        r#"feature_api_http_requests_total{method="GET",route="/api/v1/alerts",status="400"} 1"#,
        r#"feature_api_http_request_duration_seconds_count{method="GET",route="/api/v1/alerts"} 3"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    let log = std::fs::read_to_string(&s.api.process.log)?;
    assert!(
        log.contains("request_id=test-request-7") || log.contains("test-request-7"),
        "request ids are in the tracing spans:\n{log}"
    );
    s.finish().await
}

/// schemathesis from the environment tool's virtualenv (installed there if missing).
fn installed_schemathesis() -> anyhow::Result<String> {
    let env_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("env");
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sys; sys.path.insert(0, sys.argv[1]); from tsenv import install; print(install.api_test_tools() / 'schemathesis')")
        .arg(&env_dir)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "installing schemathesis failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .last()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("the installer printed no path"))
}

/// The served OpenAPI document, then schemathesis (PyPI) generating requests from it,
/// positive and negative, against the running API: no failure may be found.
#[tokio::test]
async fn schemathesis_finds_no_failure_in_the_served_openapi_document() -> anyhow::Result<()> {
    let schemathesis = match std::env::var("SCHEMATHESIS").ok().or_else(|| {
        TestEnv::load()
            .ok()?
            .get("SCHEMATHESIS")
            .ok()
            .map(str::to_owned)
    }) {
        Some(path) => path,
        // An environment started before schemathesis was part of it: ask the installer (cached).
        None => installed_schemathesis()?,
    };
    let s = setup(&[]).await?;
    let (status, doc) = s.get("/api/v1/openapi.json").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.")
    );
    for path in [
        "/api/v1/users/{user_id}/features",
        "/api/v1/users/{user_id}/sessions",
        "/api/v1/users/{user_id}/alerts",
        "/api/v1/alerts",
        "/api/v1/revenue",
        "/health/ready",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    assert!(doc["components"]["schemas"].get("FraudAlert").is_some());

    let config =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schemathesis.toml");
    let report = trendstream_e2e::feature_api::log_dir()
        .join(format!("schemathesis-{}.json", s.keys.prefix()));
    let output = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(&schemathesis)
            .arg("--config-file")
            .arg(&config)
            .args(["run", &s.api.url("/api/v1/openapi.json")])
            .args(["--url", &s.api.base])
            .args(["--max-examples", "40", "--seed", "20261123"])
            .args(["--report", "ndjson", "--report-ndjson-path"])
            .arg(&report)
            .env("NO_COLOR", "1")
            // schemathesis keeps a cache in its working directory.
            .current_dir(trendstream_e2e::feature_api::log_dir())
            .kill_on_drop(true)
            .output(),
    )
    .await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Vec<&str> = stdout.lines().rev().take(25).collect();
    println!(
        "schemathesis:\n{}",
        summary.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    assert!(
        output.status.success(),
        "schemathesis found failures ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("passed"), "{stdout}");
    s.finish().await
}

/// SIGTERM with a dashboard event stream open: the stream ends, the server drains and the
/// process exits 0, well within its shutdown grace.
#[tokio::test]
async fn sigterm_ends_event_streams_and_exits_cleanly() -> anyhow::Result<()> {
    let mut s = setup(&["--shutdown-grace", "10s", "--dashboard-interval", "100ms"]).await?;
    let mut stream = s.http.get(s.api.url("/dashboard/events")).send().await?;
    assert_eq!(stream.status(), StatusCode::OK);
    let first = stream.chunk().await?.unwrap_or_default();
    let first = String::from_utf8_lossy(&first).into_owned();
    assert!(first.contains("event: snapshot"), "{first}");
    assert!(first.contains("HIGH_VALUE_BURST"), "{first}");

    let pid = s.api.process.pid().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()?;
    assert!(status.success());
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(_chunk) = stream.chunk().await? {}
        anyhow::Ok(())
    })
    .await;
    assert!(ended.is_ok(), "the event stream ended on SIGTERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let exit = loop {
        match s.api.process.check_alive() {
            Ok(()) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(()) => anyhow::bail!("feature-api still running 5 s after SIGTERM"),
            Err(exited) => break exited.to_string(),
        }
    };
    assert!(exit.contains("exit status: 0"), "{exit}");
    assert!(exit.contains("shutting down"), "{exit}");
    s.finish().await
}
