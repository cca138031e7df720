//! Prometheus smoke test: the real Prometheus scrapes an endpoint this test serves (with the
//! prometheus-client crate the services use, in OpenMetrics format) and a query returns the
//! served value.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use std::time::Duration;
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
    let _target = trendstream_e2e::prometheus::Target::register(
        env.get("PROMETHEUS_TARGETS_DIR")?,
        &run,
        &address.to_string(),
        serde_json::json!({ "smoke_run": run }),
    )?;
    let query = format!("trendstream_smoke_records_total{{smoke_run=\"{run}\"}}");
    let (value, last) = trendstream_e2e::prometheus::query_until(
        prometheus,
        &query,
        Duration::from_secs(45),
        |_| true,
    )
    .await?;
    assert_eq!(
        value.as_deref(),
        Some("4217"),
        "query {query}; last answer {last}"
    );
    Ok(())
}
