//! The `cdc-processor` binary's configuration: the common service options, the runtime's
//! options and the decoding settings, from flags or the environment the operator sets.

use crate::columns::DecodeSettings;
use clap::{Parser, ValueEnum};
use trendstream_events::debezium::{DecimalMode, TimestampEncoding};
use trendstream_runtime::RuntimeOptions;
use trendstream_service::config::{CommonOptions, ServiceConfig};

/// Debezium's `decimal.handling.mode`, used for records sent without a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DecimalHandling {
    Precise,
    String,
    Double,
}

/// How integer timestamp columns are encoded in records sent without a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IntegerTimestamps {
    Millis,
    Micros,
    Nanos,
}

#[derive(Debug, Parser)]
#[command(
    version,
    about = "cdc-processor: Debezium change events to canonical order and inventory streams."
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonOptions,
    /// The runtime; KAFKA_OUTPUT_TOPIC is the canonical orders topic.
    #[command(flatten)]
    pub runtime: RuntimeOptions,
    /// Topic of the canonical inventory changes (keyed by SKU).
    #[arg(long, env = "CDC_INVENTORY_TOPIC", default_value = "inventory-changes")]
    pub inventory_topic: String,
    /// Partitions of the output topics when they do not exist yet.
    #[arg(long, env = "CDC_OUTPUT_PARTITIONS", default_value_t = 12, value_parser = clap::value_parser!(i32).range(1..))]
    pub output_partitions: i32,
    /// Decimal encoding of records without a schema (the connector's decimal.handling.mode);
    /// records with a schema are decoded as their schema says.
    #[arg(
        long,
        env = "CDC_DECIMAL_HANDLING_MODE",
        value_enum,
        default_value = "precise"
    )]
    pub decimal_handling_mode: DecimalHandling,
    /// Scale of `precise` decimals in records without a schema.
    #[arg(long, env = "CDC_DECIMAL_SCALE", default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=28))]
    pub decimal_scale: u32,
    /// Unit of integer timestamp columns in records without a schema.
    #[arg(
        long,
        env = "CDC_INTEGER_TIMESTAMPS",
        value_enum,
        default_value = "micros"
    )]
    pub integer_timestamps: IntegerTimestamps,
}

impl ServiceConfig for Config {
    fn common(&self) -> &CommonOptions {
        &self.common
    }
}

impl Config {
    pub fn settings(&self) -> DecodeSettings {
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

    pub fn validate(&self) -> Result<(), String> {
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
