//! revenue-calculator: GMV, order count and average order value per tumbling event-time window,
//! in total and per category, to the `revenue-metrics` topic and the Redis revenue series.
//!
//! Revenue is a global aggregate but state is per partition, so the job has two stages, like a
//! Kafka Streams repartition:
//! 1. every partition sums its orders per window ([`aggregate::Totals`]) and, each time its
//!    watermark passes a window boundary, sends one *progress* record to partition 0 of the
//!    internal topic `<group>-revenue-partials`: its watermark and the windows it closed;
//! 2. task 0 merges the partials per window and emits a window once every source partition has
//!    reported a watermark past it ([`aggregate::complete_windows`]), so each window is emitted
//!    exactly once, complete.
//!
//! Orders later than the watermark go to the late topic; orders in another currency than
//! `REVENUE_CURRENCY` to the dead-letter topic.

mod aggregate;

use aggregate::{Totals, complete_windows};
use revenue_calculator::config::Config;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use trendstream_events::feature_store::{
    KeySpace, REVENUE_RETENTION_MS, trim_revenue_before, write_revenue_window,
};
use trendstream_events::{Currency, OrderEvent, decode_order};
use trendstream_runtime::window::{Lateness, TumblingWindows, lateness};
use trendstream_runtime::{Context, ProcessError, Processor, Record, Timer};
use trendstream_service::config::load_config;

/// What one partition tells the merge stage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Progress {
    source: i32,
    watermark: i64,
    /// Closed windows of this partition: start → totals.
    windows: BTreeMap<i64, Totals>,
}

enum Input {
    Order(OrderEvent),
    Progress(Progress),
}

const OPEN: &str = "open";
const MERGE: &str = "merge";
const PROGRESS_TIMER: &str = "progress";
const SOURCES_KEY: &str = "sources";
const PENDING_KEY: &str = "pending";
const MERGE_PARTITION: i32 = 0;

struct RevenueCalculator {
    windows: TumblingWindows,
    currency: Currency,
    partials_topic: String,
    source_count: usize,
    keys: KeySpace,
}

impl RevenueCalculator {
    /// Stage 1: an order into its window of this partition.
    fn add_order(&self, ctx: &mut Context<'_>, order: OrderEvent) -> Result<(), ProcessError> {
        let window = self.windows.assign(order.ts);
        if lateness(&window, ctx.watermark(), ctx.allowed_lateness()) != Lateness::OnTime {
            ctx.late(format!(
                "window [{}, {}) already closed at watermark {}",
                window.start,
                window.end,
                ctx.watermark()
            ));
            return Ok(());
        }
        let key = window.start.to_string();
        let mut totals: Totals = ctx.get(OPEN, &key)?.unwrap_or_default();
        totals
            .add_order(&order, &self.currency)
            .map_err(|err| ProcessError::Invalid(err.to_string()))?;
        ctx.put(OPEN, &key, &totals)?;
        let mut open: Vec<i64> = ctx.get(OPEN, "index")?.unwrap_or_default();
        if !open.contains(&window.start) {
            open.push(window.start);
            open.sort_unstable();
            ctx.put(OPEN, "index", &open)?;
        }
        // One progress timer per partition, always at the next window boundary.
        if ctx.get::<i64>(OPEN, "timer")?.is_none() {
            let due = self.boundary_after(ctx.watermark());
            ctx.set_timer(due, PROGRESS_TIMER)?;
            ctx.put(OPEN, "timer", &due)?;
        }
        Ok(())
    }

    /// The last millisecond of the window after `watermark`: where the next report is due
    /// (at once when no watermark exists yet, so a partition reports after its first order).
    fn boundary_after(&self, watermark: i64) -> i64 {
        if watermark == i64::MIN {
            i64::MIN
        } else {
            self.windows
                .assign(watermark.saturating_add(1))
                .max_timestamp()
        }
    }

    /// Stage 1: the watermark passed a window boundary; report the closed windows.
    fn report_progress(&self, ctx: &mut Context<'_>) -> Result<(), ProcessError> {
        let watermark = ctx.watermark();
        let open: Vec<i64> = ctx.get(OPEN, "index")?.unwrap_or_default();
        let mut progress = Progress {
            source: ctx.partition(),
            watermark,
            windows: BTreeMap::new(),
        };
        let mut still_open = Vec::new();
        for start in open {
            if self.windows.assign(start).max_timestamp() <= watermark {
                let key = start.to_string();
                let totals: Totals = ctx.get(OPEN, &key)?.unwrap_or_default();
                ctx.delete(OPEN, &key)?;
                progress.windows.insert(start, totals);
            } else {
                still_open.push(start);
            }
        }
        ctx.emit_to_partition(&self.partials_topic, MERGE_PARTITION, "revenue", &progress)?;
        // Keep reporting at every window boundary, so the merge learns this partition's
        // watermark even while it has no orders.
        let due = self.boundary_after(watermark);
        ctx.put(OPEN, "index", &still_open)?;
        ctx.set_timer(due, PROGRESS_TIMER)?;
        ctx.put(OPEN, "timer", &due)?;
        Ok(())
    }

    /// Stage 2 (task 0): merge a partition's report; emit the windows now complete.
    fn merge(&self, ctx: &mut Context<'_>, progress: Progress) -> Result<(), ProcessError> {
        let mut sources: BTreeMap<i32, i64> = ctx.get(MERGE, SOURCES_KEY)?.unwrap_or_default();
        let mark = sources.entry(progress.source).or_insert(progress.watermark);
        *mark = (*mark).max(progress.watermark);
        ctx.put(MERGE, SOURCES_KEY, &sources)?;
        let mut pending: Vec<i64> = ctx.get(MERGE, PENDING_KEY)?.unwrap_or_default();
        for (start, partial) in progress.windows {
            let key = format!("w/{start}");
            let mut totals: Totals = ctx.get(MERGE, &key)?.unwrap_or_default();
            totals
                .merge(&partial)
                .map_err(|err| ProcessError::Invalid(err.to_string()))?;
            ctx.put(MERGE, &key, &totals)?;
            if !pending.contains(&start) {
                pending.push(start);
            }
        }
        let bounds = pending.iter().map(|s| {
            let w = self.windows.assign(*s);
            (w.start, w.end)
        });
        let done = complete_windows(bounds, &sources, self.source_count);
        for (start, end) in &done {
            let key = format!("w/{start}");
            let totals: Totals = ctx.get(MERGE, &key)?.unwrap_or_default();
            ctx.delete(MERGE, &key)?;
            let window = totals.into_window(*start, *end, self.currency);
            ctx.emit(&start.to_string(), &window)?;
            for op in write_revenue_window(&self.keys, &window)
                .map_err(|err| ProcessError::Invalid(err.to_string()))?
            {
                ctx.redis(op);
            }
        }
        // Retention in event time: windows more than REVENUE_RETENTION_MS older than the newest
        // one emitted leave Redis (the topic keeps its own retention).
        if let Some(newest) = done.iter().map(|(start, _)| *start).max() {
            ctx.redis(trim_revenue_before(
                &self.keys,
                newest.saturating_sub(REVENUE_RETENTION_MS),
            ));
        }
        pending.retain(|s| !done.iter().any(|(start, _)| start == s));
        ctx.put(MERGE, PENDING_KEY, &pending)?;
        Ok(())
    }
}

impl Processor for RevenueCalculator {
    type Event = Input;

    fn service(&self) -> &'static str {
        "revenue-calculator"
    }

    fn stores(&self) -> &'static [&'static str] {
        &[OPEN, MERGE]
    }

    fn internal_topics(&self) -> Vec<String> {
        vec![self.partials_topic.clone()]
    }

    fn decode(&self, record: &Record<'_>) -> Result<Input, ProcessError> {
        let payload = record
            .payload
            .ok_or_else(|| ProcessError::Invalid("record has no value".into()))?;
        if record.topic == self.partials_topic {
            serde_json::from_slice(payload)
                .map(Input::Progress)
                .map_err(|e| ProcessError::Decode(format!("progress record: {e}")))
        } else {
            decode_order(payload)
                .map(Input::Order)
                .map_err(|e| ProcessError::Decode(e.to_string()))
        }
    }

    fn event_time(&self, event: &Input) -> i64 {
        match event {
            Input::Order(order) => order.ts,
            // Progress records must not move task 0's own order clock.
            Input::Progress(_) => i64::MIN,
        }
    }

    fn process(&self, ctx: &mut Context<'_>, event: Input) -> Result<(), ProcessError> {
        match event {
            Input::Order(order) => self.add_order(ctx, order),
            Input::Progress(progress) => self.merge(ctx, progress),
        }
    }

    fn on_timer(&self, ctx: &mut Context<'_>, timer: Timer) -> Result<(), ProcessError> {
        if timer.key == PROGRESS_TIMER {
            self.report_progress(ctx)?;
        }
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    let config: Config = load_config("revenue-calculator");
    let source_count = match (config.partitions, config.common.check_config) {
        (Some(n), _) => n,
        (None, true) => 0,
        (None, false) => match trendstream_runtime::changelog::topic_partitions(
            &config.runtime.kafka(),
            &config.runtime.input_topics[0],
        ) {
            Ok(n) if n > 0 => n,
            Ok(_) => {
                eprintln!("KAFKA_PARTITIONS is unset and the input topic does not exist");
                return std::process::ExitCode::from(2);
            }
            Err(err) => {
                eprintln!(
                    "KAFKA_PARTITIONS is unset and the input topic's partitions are unknown: {err}"
                );
                return std::process::ExitCode::from(2);
            }
        },
    };
    let size = i64::try_from(config.window_size.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let processor = RevenueCalculator {
        windows: TumblingWindows::new(size),
        currency: config.currency,
        partials_topic: format!("{}-revenue-partials", config.runtime.consumer_group),
        source_count,
        keys: KeySpace::new(config.redis_key_prefix),
    };
    trendstream_runtime::run_service(
        config.common.check_config,
        config.runtime,
        config.common.http_addr,
        processor,
    )
}
