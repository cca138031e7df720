//! Redis smoke test against the real redis-server.

use redis::AsyncCommands;
use trendstream_e2e::{TestEnv, unique_name};

#[tokio::test]
async fn set_then_get_returns_the_value_and_ttl_is_kept() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let url = env.get("REDIS_URL")?;
    println!("redis-server at {url}");
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let key = unique_name("smoke:user");
    let () = conn.set_ex(&key, "features-v1", 60).await?;
    let value: String = conn.get(&key).await?;
    assert_eq!(value, "features-v1");
    let ttl: i64 = conn.ttl(&key).await?;
    assert!((1..=60).contains(&ttl), "ttl {ttl}");
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await?;
    assert!(
        info.contains("redis_version:"),
        "a real Redis answers INFO: {info}"
    );
    Ok(())
}
