//! cdc-processor: Debezium change events (orders, order_items, inventory) to the canonical
//! `orders` and `inventory-changes` streams, on the streaming runtime.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use cdc_processor::config::Config;
use cdc_processor::processor::{CdcProcessor, OutputTopics};
use rdkafka::consumer::BaseConsumer;
use trendstream_runtime::changelog::{TopicSpec, ensure_topics, partition_count};
use trendstream_service::config::load_config;

/// Creates the output topics if needed and reads their partition counts (records are sent to
/// the partition of their key, so the counts must be the broker's).
fn output_topics(config: &Config) -> anyhow::Result<OutputTopics> {
    let kafka = config.runtime.kafka();
    let specs: Vec<TopicSpec> = [&config.runtime.output_topic, &config.inventory_topic]
        .into_iter()
        .map(|name| TopicSpec {
            name: name.clone(),
            partitions: config.output_partitions,
            compacted: false,
        })
        .collect();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a tokio runtime")?;
    tokio
        .block_on(ensure_topics(
            &kafka,
            config.runtime.changelog_replication_factor,
            &specs,
        ))
        .context("creating the output topics")?;
    let probe: BaseConsumer = kafka
        .client_config()
        .create()
        .context("creating a metadata client")?;
    let count = |topic: &str| -> anyhow::Result<i32> {
        // A topic created a moment ago may not be in the metadata yet.
        for _ in 0..50 {
            let n =
                partition_count(&probe, topic).with_context(|| format!("partitions of {topic}"))?;
            if n > 0 {
                return Ok(n);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        anyhow::bail!("topic {topic} has no partitions on {kafka}")
    };
    Ok(OutputTopics {
        orders: config.runtime.output_topic.clone(),
        orders_partitions: count(&config.runtime.output_topic)?,
        inventory: config.inventory_topic.clone(),
        inventory_partitions: count(&config.inventory_topic)?,
    })
}

fn main() -> ExitCode {
    let config: Config = load_config("cdc-processor");
    if let Err(err) = config.validate() {
        tracing::error!(error = %err, "invalid configuration");
        eprintln!("cdc-processor: {err}");
        return ExitCode::from(2);
    }
    if config.common.check_config {
        return ExitCode::SUCCESS;
    }
    let outputs = match output_topics(&config) {
        Ok(outputs) => outputs,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "cdc-processor failed");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(?outputs, "output topics");
    let processor = CdcProcessor::new(config.settings(), outputs);
    trendstream_runtime::run_service(false, config.runtime, config.common.http_addr, processor)
}
