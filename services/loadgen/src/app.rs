//! One run: the generator's records to Kafka and/or the event file, paced, with a progress bar.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::Config;
use crate::events_file::EventFile;
use crate::generator::Generator;
use crate::kafka::KafkaSink;
use crate::postgres::PostgresSink;
use crate::rate::{MIN_SLEEP, RateLimiter};
use crate::record::{Partitions, RecordKind, Topic};
use crate::summary::Summary;

/// How long the broker's metadata may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the final flush may take.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);
/// The progress bar is advanced in steps of this many records (cheap at millions per second).
const PROGRESS_STEP: u64 = 512;

/// Runs the configured load and returns its summary.
pub fn run(config: &Config) -> anyhow::Result<Summary> {
    let kafka = if config.dry_run {
        None
    } else {
        Some(KafkaSink::connect(&config.kafka(), METADATA_TIMEOUT)?)
    };
    let partitions = match &kafka {
        Some(sink) => Partitions {
            clicks: sink.partition_count(&config.clicks_topic, METADATA_TIMEOUT)?,
            orders: sink.partition_count(&config.orders_topic, METADATA_TIMEOUT)?,
        },
        None => Partitions {
            clicks: config.partitions,
            orders: config.partitions,
        },
    };
    tracing::info!(
        seed = config.seed,
        count = config.count,
        rate = config.rate,
        clicks_partitions = partitions.clicks,
        orders_partitions = partitions.orders,
        dry_run = config.dry_run,
        "generating"
    );
    let mut postgres = match (&config.postgres_url, config.orders_sink.postgres()) {
        (Some(url), true) => Some(PostgresSink::connect(url)?),
        _ => None,
    };
    let mut file = config
        .events_file
        .as_deref()
        .map(EventFile::create)
        .transpose()?;
    let watermarks = u64::try_from(partitions.clicks + partitions.orders).unwrap_or(0);
    let total = (config.count > 0).then_some(config.count + watermarks);
    let progress = progress_bar(total, config.quiet);
    let stop = stop_on_signal();
    let mut generator = Generator::new(config.gen_config(partitions));
    let mut limiter = RateLimiter::new(config.rate);
    let started = Instant::now();
    let mut since_progress = 0;
    let mut stopping = false;
    while let Some(record) = generator.next() {
        if !stopping && stop.load(Ordering::Relaxed) {
            stopping = true;
            generator.stop();
            progress.set_message("stopping");
        }
        let wait = limiter.delay(started.elapsed());
        if wait >= MIN_SLEEP {
            std::thread::sleep(wait);
        }
        let topic = match record.topic {
            Topic::Clicks => config.clicks_topic.as_str(),
            Topic::Orders => config.orders_topic.as_str(),
        };
        let is_order = record.topic == Topic::Orders;
        if let Some(sink) = &kafka
            && (!is_order || config.orders_sink.kafka())
        {
            sink.send(topic, &record)?;
        }
        if is_order
            && let Some(pg) = &mut postgres
            && matches!(
                record.kind,
                RecordKind::InOrder | RecordKind::OutOfOrder | RecordKind::Late
            )
        {
            let order = trendstream_events::decode_order(record.value.as_bytes())
                .context("an order loadgen generated does not decode")?;
            pg.write(&order)?;
        }
        if let Some(file) = &mut file {
            file.write(topic, &record)?;
        }
        since_progress += 1;
        if since_progress == PROGRESS_STEP {
            progress.inc(since_progress);
            since_progress = 0;
        }
    }
    progress.inc(since_progress);
    if let Some(sink) = kafka {
        progress.set_message("waiting for acknowledgements");
        let delivered = sink.finish(FLUSH_TIMEOUT)?;
        tracing::info!(delivered, "all records acknowledged");
    }
    if let Some(pg) = &postgres {
        tracing::info!(orders = pg.written(), "orders written to PostgreSQL");
    }
    let events_file = file
        .map(EventFile::finish)
        .transpose()?
        .map(|p| p.display().to_string());
    progress.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let counts = generator.counts().clone();
    let summary = Summary {
        seed: config.seed,
        dry_run: config.dry_run,
        elapsed_seconds: elapsed,
        records_per_second: if elapsed > 0.0 {
            counts.records as f64 / elapsed
        } else {
            0.0
        },
        events_file,
        counts,
    };
    if let Some(path) = &config.summary_file {
        let json = serde_json::to_vec_pretty(&summary)?;
        std::fs::write(path, json)
            .with_context(|| format!("writing the summary file {}", path.display()))?;
    }
    Ok(summary)
}

/// A flag set by the first SIGTERM or SIGINT (the run then ends cleanly: held events, then the
/// watermark records); a second signal exits at once.
fn stop_on_signal() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let watcher = std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            use tokio::signal::unix::{SignalKind, signal};
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => return tracing::warn!(%err, "no signal handling"),
            };
            runtime.block_on(async move {
                let (Ok(mut term), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) else {
                    return tracing::warn!("no signal handling");
                };
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                flag.store(true, Ordering::Relaxed);
                tracing::warn!(
                    "stopping: sending what is held back and the watermark records (signal again to exit at once)"
                );
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                std::process::exit(130);
            });
        });
    if let Err(err) = watcher {
        tracing::warn!(%err, "no signal handling");
    }
    stop
}

fn progress_bar(total: Option<u64>, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    let template = if total.is_some() {
        "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} records ({rate}, eta {eta}) {msg}"
    } else {
        "{spinner} [{elapsed_precise}] {human_pos} records ({rate}) {msg}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} records/s", state.per_sec());
            },
        ));
    }
    bar
}
