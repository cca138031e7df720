//! trendstream-operator: watches StreamJob resources and reconciles their processor fleets.

use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use clap::Parser;
use kube::Client;
use kube::runtime::events::Reporter;
use kube_lease_manager::LeaseManagerBuilder;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use trendstream_operator::builders::Defaults;
use trendstream_operator::controller::Context;
use trendstream_operator::kafka::KafkaInspector;
use trendstream_operator::metrics::Metrics;
use trendstream_operator::runner;
use trendstream_service::config::{CommonOptions, ServiceConfig, load_config};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "TrendStream operator: reconciles StreamJob resources"
)]
struct Config {
    #[command(flatten)]
    common: CommonOptions,
    /// Namespace to watch; all namespaces when absent.
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Registry and repository prefix of the processors' default images.
    #[arg(long, env = "IMAGE_REGISTRY", default_value = "ghcr.io/trendstream")]
    image_registry: String,
    /// Tag of the processors' default images.
    #[arg(long, env = "IMAGE_TAG", default_value = env!("CARGO_PKG_VERSION"))]
    image_tag: String,
    /// External metric (prometheus-adapter) the HPAs scale on.
    #[arg(
        long,
        env = "LAG_METRIC",
        default_value = "trendstream_consumer_group_lag"
    )]
    lag_metric: String,
    /// Timeout of one Kafka metadata or offset query, in seconds.
    #[arg(long, env = "KAFKA_TIMEOUT_SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=120))]
    kafka_timeout_seconds: u64,
    /// How often every job's consumer lag is read from the broker, in seconds.
    #[arg(long, env = "LAG_INTERVAL_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    lag_interval_seconds: u64,
    /// StreamJobs reconciled at once.
    #[arg(long, env = "RECONCILE_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Elect a leader through a Lease, so that only one of several replicas reconciles.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "trendstream-operator")]
    lease_name: String,
    /// Namespace of the Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the Lease and in Events.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

impl ServiceConfig for Config {
    fn common(&self) -> &CommonOptions {
        &self.common
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = load_config("trendstream-operator");
    if config.common.check_config {
        return Ok(());
    }
    let client = Client::try_default()
        .await
        .context("no Kubernetes configuration (in-cluster or KUBECONFIG)")?;
    let identity = config
        .identity
        .clone()
        .unwrap_or_else(|| format!("trendstream-operator-{}", std::process::id()));
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(config.common.http_addr)
        .await
        .with_context(|| format!("binding {}", config.common.http_addr))?;
    tokio::spawn(serve_http(listener, metrics.clone(), ready.clone()));

    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<&'static str>();
    let _lease = if config.leader_election {
        let manager = LeaseManagerBuilder::new(client.clone(), &config.lease_name)
            .with_namespace(&config.lease_namespace)
            .with_identity(&identity)
            .with_duration(15)
            .with_grace(5)
            .build()
            .await
            .context("setting up leader election")?;
        let (mut leading, task) = manager.watch().await;
        tracing::info!(lease = %config.lease_name, %identity, "waiting for leadership");
        ready.store(true, Ordering::SeqCst);
        while !*leading.borrow_and_update() {
            leading.changed().await.context("leader election stopped")?;
        }
        tracing::info!(%identity, "leading");
        tokio::spawn(async move {
            // Losing the lease ends the process: a restart is the simplest way to make sure
            // no reconciliation of the old leader is still in flight.
            while leading.changed().await.is_ok() {
                if !*leading.borrow() {
                    break;
                }
            }
            let _ = lost_tx.send("leadership lost");
        });
        Some(task)
    } else {
        drop(lost_tx);
        None
    };
    ready.store(true, Ordering::SeqCst);

    let shutdown = async move {
        tokio::select! {
            _ = trendstream_service::signal::terminated() => tracing::info!("shutting down"),
            Ok(reason) = lost_rx => tracing::warn!(reason, "stopping"),
        }
    };
    let defaults = Defaults {
        image_registry: config.image_registry.clone(),
        image_tag: config.image_tag.clone(),
        lag_metric: config.lag_metric.clone(),
    };
    let reporter = Reporter {
        controller: "trendstream-operator".into(),
        instance: Some(identity.clone()),
    };
    let kafka = KafkaInspector::broker(Duration::from_secs(config.kafka_timeout_seconds));
    let make_context = {
        let client = client.clone();
        let lag_interval = Duration::from_secs(config.lag_interval_seconds);
        move |caches| {
            let ctx = Context::new(client, defaults, kafka, reporter, metrics, caches);
            tokio::spawn(ctx.lag.clone().run(lag_interval));
            ctx
        }
    };
    runner::run(
        client,
        make_context,
        config.namespace.clone(),
        config.concurrency,
        shutdown,
    )
    .await;
    Ok(())
}

async fn serve_http(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
) {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
        .route("/health/live", get(|| async { "ok" }))
        .route(
            "/health/ready",
            get(move || {
                let ready = ready.load(Ordering::SeqCst);
                async move {
                    if ready {
                        (axum::http::StatusCode::OK, "ok")
                    } else {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "starting")
                    }
                }
            }),
        );
    if let Err(err) = axum::serve(listener, app).await {
        tracing::error!(%err, "HTTP server stopped");
    }
}
