//! pg-capture: PostgreSQL logical replication to Debezium-compatible change topics.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cdc_processor::capture::config::CaptureConfig;
use cdc_processor::capture::run::{CaptureMetrics, run};
use prometheus_client::registry::Registry;
use trendstream_service::config::load_config;
use trendstream_service::ops::{self, Readiness};

fn main() -> ExitCode {
    let config: CaptureConfig = load_config("pg-capture");
    if let Err(err) = config.validate() {
        tracing::error!(error = %err, "invalid configuration");
        eprintln!("pg-capture: {err}");
        return ExitCode::from(2);
    }
    if config.common.check_config {
        return ExitCode::SUCCESS;
    }
    let tokio = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("pg-capture: starting the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    tokio.block_on(async move {
        let mut registry = Registry::with_prefix("trendstream");
        let metrics = CaptureMetrics::register(&mut registry);
        let readiness = Readiness::new("starting");
        let listener = match tokio::net::TcpListener::bind(config.common.http_addr).await {
            Ok(l) => l,
            Err(err) => {
                tracing::error!(%err, addr = %config.common.http_addr, "binding the ops endpoint");
                return ExitCode::FAILURE;
            }
        };
        let router = ops::router(Arc::new(registry), readiness.clone());
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, router).await {
                tracing::error!(%err, "ops endpoint failed");
            }
        });
        let stop = Arc::new(AtomicBool::new(false));
        {
            let stop = stop.clone();
            tokio::spawn(async move {
                trendstream_service::signal::terminated().await;
                tracing::info!("shutdown requested; finishing the batch");
                stop.store(true, Ordering::SeqCst);
            });
        }
        run(config, readiness, metrics, stop).await;
        ExitCode::SUCCESS
    })
}
