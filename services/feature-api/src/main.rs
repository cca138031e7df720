//! feature-api: REST over the Redis feature store, with a live dashboard.

use std::future::IntoFuture;
use std::process::ExitCode;
use std::sync::Arc;

use feature_api::access::Access;
use feature_api::config::Config;
use feature_api::dashboard::spawn_poller;
use feature_api::metrics::Metrics;
use feature_api::routes::{AppState, app};
use feature_api::store::Store;
use tokio::sync::watch;
use trendstream_events::feature_store::KeySpace;
use trendstream_service::config::load_config;

fn main() -> ExitCode {
    let config: Config = load_config("feature-api");
    if let Err(err) = config.validate() {
        tracing::error!(%err, "invalid configuration");
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    if config.common.check_config {
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(%err, "feature-api failed");
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error("the Redis client cannot be created: {0}")]
    Store(#[from] feature_api::store::StoreError),
    #[error(transparent)]
    RedisSettings(#[from] trendstream_service::redis::RedisClientError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
}

async fn serve(config: Config) -> Result<(), ServeError> {
    let store = Store::new(
        config.redis_auth.client(&config.redis_url)?,
        KeySpace::new(config.key_prefix.clone()),
        config.redis_timeout,
    )?;
    let (stop, shutdown) = watch::channel(false);
    let state_shutdown = shutdown.clone();
    let snapshots = spawn_poller(store.clone(), config.dashboard_interval, shutdown.clone());
    let state = AppState {
        store,
        metrics: Arc::new(Metrics::new()),
        access: Access::new(
            config.auth_token.clone(),
            config.max_concurrent_requests as usize,
            config.request_timeout,
        ),
        snapshots,
        shutdown,
    };
    let router = app(state, &config.cors_origins);
    let addr = config.common.http_addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(addr = %local, "feature-api listening");
    let grace = config.shutdown_grace;
    let signalled = async move {
        trendstream_service::signal::terminated().await;
        tracing::info!(?grace, "shutting down: draining requests and event streams");
        let _ = stop.send(true);
    };
    let mut stopping = state_shutdown;
    let forced = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
        tokio::time::sleep(grace).await;
    };
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(signalled)
        .into_future();
    let result = tokio::select! {
        result = server => result.map_err(ServeError::Serve),
        () = forced => {
            tracing::warn!(?grace, "shutdown grace elapsed; closing the connections still open");
            Ok(())
        }
    };
    tracing::info!("feature-api stopped");
    result
}
