//! GCS smoke test: the emulator's JSON API (bucket create, media upload, download).

use trendstream_e2e::{TestEnv, unique_name};

#[tokio::test]
async fn an_uploaded_object_downloads_byte_for_byte() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let endpoint = env.get("GCS_ENDPOINT")?;
    println!("GCS emulator at {endpoint}");
    let http = reqwest::Client::new();
    let bucket = unique_name("checkpoints");

    trendstream_e2e::gcs::create_bucket(endpoint, &bucket).await?;

    let body: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let object = "job/partition-3/000123.sst";
    let uploaded = http
        .post(format!("{endpoint}/upload/storage/v1/b/{bucket}/o"))
        .query(&[("uploadType", "media"), ("name", object)])
        .header("content-type", "application/octet-stream")
        .body(body.clone())
        .send()
        .await?;
    assert!(
        uploaded.status().is_success(),
        "upload: {}",
        uploaded.status()
    );
    let metadata: serde_json::Value = uploaded.json().await?;
    assert_eq!(metadata["name"], object);
    assert_eq!(
        metadata["size"].as_str().map(str::to_owned),
        Some(body.len().to_string())
    );

    let encoded = object.replace('/', "%2F");
    let downloaded = http
        .get(format!(
            "{endpoint}/storage/v1/b/{bucket}/o/{encoded}?alt=media"
        ))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    assert_eq!(downloaded.as_ref(), body.as_slice());
    Ok(())
}
