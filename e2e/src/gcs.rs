//! GCS emulator helpers for tests.

/// Creates `bucket` on the emulator at `endpoint`.
pub async fn create_bucket(endpoint: &str, bucket: &str) -> anyhow::Result<()> {
    let created = reqwest::Client::new()
        .post(format!("{endpoint}/storage/v1/b?project=trendstream-test"))
        .json(&serde_json::json!({ "name": bucket }))
        .send()
        .await?;
    anyhow::ensure!(
        created.status().is_success(),
        "bucket create: {}",
        created.status()
    );
    Ok(())
}
