//! `create-topics [--partitions N] TOPIC...`: creates topics on the broker in
//! `KAFKA_BOOTSTRAP_SERVERS` (or the test environment's); existing ones are left as they are.

use trendstream_e2e::{TestEnv, kafka};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut partitions = 12;
    if let Some(at) = args.iter().position(|a| a == "--partitions") {
        let value = args
            .get(at + 1)
            .ok_or_else(|| anyhow::anyhow!("--partitions needs a number"))?;
        partitions = value
            .parse()
            .map_err(|_| anyhow::anyhow!("--partitions: {value:?} is not a number"))?;
        args.drain(at..at + 2);
    }
    anyhow::ensure!(
        !args.is_empty(),
        "usage: create-topics [--partitions N] TOPIC..."
    );
    let bootstrap = match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        Ok(servers) => servers,
        Err(_) => TestEnv::load()?.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned(),
    };
    for topic in &args {
        kafka::create_topic(&bootstrap, topic, partitions).await?;
        println!("topic {topic} ({partitions} partitions) on {bootstrap}");
    }
    Ok(())
}
