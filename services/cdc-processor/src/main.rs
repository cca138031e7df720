//! cdc-processor: Debezium change events (orders, order_items, inventory) to the canonical
//! `orders` and `inventory-changes` streams, on the streaming runtime.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use cdc_processor::columns::DecodeSettings;
use cdc_processor::processor::{CdcProcessor, OutputTopics};
use clap::{Parser, ValueEnum};
use rdkafka::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use trendstream_events::debezium::{DecimalMode, TimestampEncoding};
use trendstream_runtime::RuntimeOptions;
use trendstream_runtime::changelog::{TopicSpec, ensure_topics, partition_count};
use trendstream_service::config::{CommonOptions, ServiceConfig, load_config};

/// Debezium's `decimal.handling.mode`, used for records sent without a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DecimalHandling {
    Precise,
    String,
    Double,
}

/// How integer timestamp columns are encoded in records sent without a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum IntegerTimestamps {
    Millis,
    Micros,
    Nanos,
}

#[derive(Debug, Parser)]
#[command(
    version,
    about = "cdc-processor: Debezium change events to canonical order and inventory streams."
)]
struct Config {
    #[command(flatten)]
    common: CommonOptions,
    /// The runtime; KAFKA_OUTPUT_TOPIC is the canonical orders topic.
    #[command(flatten)]
    runtime: RuntimeOptions,
    /// Topic of the canonical inventory changes (keyed by SKU).
    #[arg(long, env = "CDC_INVENTORY_TOPIC", default_value = "inventory-changes")]
    inventory_topic: String,
    /// Partitions of the output topics when they do not exist yet.
    #[arg(long, env = "CDC_OUTPUT_PARTITIONS", default_value_t = 12, value_parser = clap::value_parser!(i32).range(1..))]
    output_partitions: i32,
    /// Decimal encoding of records without a schema (the connector's decimal.handling.mode);
    /// records with a schema are decoded as their schema says.
    #[arg(
        long,
        env = "CDC_DECIMAL_HANDLING_MODE",
        value_enum,
        default_value = "precise"
    )]
    decimal_handling_mode: DecimalHandling,
    /// Scale of `precise` decimals in records without a schema.
    #[arg(long, env = "CDC_DECIMAL_SCALE", default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=28))]
    decimal_scale: u32,
    /// Unit of integer timestamp columns in records without a schema.
    #[arg(
        long,
        env = "CDC_INTEGER_TIMESTAMPS",
        value_enum,
        default_value = "micros"
    )]
    integer_timestamps: IntegerTimestamps,
}

impl ServiceConfig for Config {
    fn common(&self) -> &CommonOptions {
        &self.common
    }
}

impl Config {
    fn settings(&self) -> DecodeSettings {
        DecodeSettings {
            decimal_mode: match self.decimal_handling_mode {
                DecimalHandling::Precise => DecimalMode::Precise {
                    scale: self.decimal_scale,
                },
                DecimalHandling::String => DecimalMode::String,
                DecimalHandling::Double => DecimalMode::Double,
            },
            integer_timestamps: match self.integer_timestamps {
                IntegerTimestamps::Millis => TimestampEncoding::Millis,
                IntegerTimestamps::Micros => TimestampEncoding::Micros,
                IntegerTimestamps::Nanos => TimestampEncoding::Nanos,
            },
        }
    }

    fn validate(&self) -> Result<(), String> {
        self.runtime.validate().map_err(|e| e.to_string())?;
        if self.inventory_topic.trim().is_empty() {
            return Err("invalid configuration: CDC_INVENTORY_TOPIC: must not be empty".into());
        }
        if self.inventory_topic == self.runtime.output_topic {
            return Err(
                "invalid configuration: CDC_INVENTORY_TOPIC: must differ from KAFKA_OUTPUT_TOPIC"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Creates the output topics if needed and reads their partition counts (records are sent to
/// the partition of their key, so the counts must be the broker's).
fn output_topics(config: &Config) -> anyhow::Result<OutputTopics> {
    let bootstrap = &config.runtime.bootstrap_servers;
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
            bootstrap,
            config.runtime.changelog_replication_factor,
            &specs,
        ))
        .context("creating the output topics")?;
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
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
        anyhow::bail!("topic {topic} has no partitions on {bootstrap}")
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
