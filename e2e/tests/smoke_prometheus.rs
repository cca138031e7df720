//! Prometheus smoke test: the real Prometheus scrapes an endpoint this test serves (with the
//! prometheus-client crate the services use, in OpenMetrics format) and a query returns the
//! served value.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use std::time::{Duration, Instant};
use trendstream_e2e::{TestEnv, unique_name};

fn exposition() -> anyhow::Result<String> {
    let mut registry = Registry::with_prefix("trendstream_smoke");
    let records: Counter = Counter::default();
    records.inc_by(4217);
    registry.register("records", "Records processed by the smoke test", records);
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}

#[tokio::test]
async fn prometheus_scrapes_a_served_endpoint_and_a_query_returns_its_value() -> anyhow::Result<()>
{
    let env = TestEnv::load()?;
    let prometheus = env.get("PROMETHEUS_URL")?;
    println!("Prometheus at {prometheus}");
    let body = exposition()?;

    let served = body.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let served = served.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    served,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let run = unique_name("run");
    let targets_dir = std::path::PathBuf::from(env.get("PROMETHEUS_TARGETS_DIR")?);
    let target_file = targets_dir.join(format!("{run}.json"));
    let targets =
        serde_json::json!([{ "targets": [address.to_string()], "labels": { "smoke_run": run } }]);
    // Written whole, then renamed, so Prometheus never reads half a file.
    let partial = targets_dir.join(format!(".{run}.tmp"));
    std::fs::write(&partial, serde_json::to_vec(&targets)?)?;
    std::fs::rename(&partial, &target_file)?;

    let http = reqwest::Client::new();
    let query = format!("trendstream_smoke_records_total{{smoke_run=\"{run}\"}}");
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut last = serde_json::Value::Null;
    let mut value = None;
    while Instant::now() < deadline {
        let response: serde_json::Value = http
            .get(format!("{prometheus}/api/v1/query"))
            .query(&[("query", query.as_str())])
            .send()
            .await?
            .json()
            .await?;
        if let Some(v) = response["data"]["result"][0]["value"][1].as_str() {
            value = Some(v.to_owned());
            break;
        }
        last = response;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    std::fs::remove_file(&target_file)?;
    assert_eq!(
        value.as_deref(),
        Some("4217"),
        "query {query}; last answer {last}"
    );
    Ok(())
}
