//! The runtime's example processor, used by its tests: counts records per key.
//!
//! `--mode count`: every record emits the key's running count (`{"key","count"}`) and sets
//! Redis `counter:<key>`; after any number of crashes the output per key must be exactly
//! 1, 2, ..., n. `--mode window`: per-key counts in tumbling event-time windows, emitted when
//! the watermark passes the window (and again for each late record within allowed lateness);
//! records later than that go to the late topic.
//!
//! Input: key = the counted key, value = `{"ts": <event time ms>}`.

use clap::Parser;
use serde::{Deserialize, Serialize};
use trendstream_runtime::window::{Lateness, TumblingWindows, Window, lateness};
use trendstream_runtime::{
    Context, ProcessError, Processor, Record, RedisWrite, RuntimeOptions, Timer,
};
use trendstream_service::config::{CommonOptions, ServiceConfig, load_config};
use trendstream_service::duration;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Mode {
    Count,
    Window,
}

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Example TrendStream processor: counts records per key."
)]
struct Config {
    #[command(flatten)]
    common: CommonOptions,
    #[command(flatten)]
    runtime: RuntimeOptions,
    #[arg(long, env = "COUNTER_MODE", value_enum, default_value = "count")]
    mode: Mode,
    /// Tumbling window size (window mode).
    #[arg(long, env = "WINDOW_SIZE", default_value = "10s", value_parser = |v: &str| duration::parse(v).map_err(|e| e.to_string()))]
    window_size: std::time::Duration,
}

impl ServiceConfig for Config {
    fn common(&self) -> &CommonOptions {
        &self.common
    }
}

#[derive(Debug, Deserialize)]
struct Input {
    ts: i64,
}

struct Event {
    key: String,
    ts: i64,
}

#[derive(Debug, Serialize)]
struct CountOutput<'a> {
    key: &'a str,
    count: u64,
}

#[derive(Debug, Serialize)]
struct WindowOutput<'a> {
    key: &'a str,
    start: i64,
    end: i64,
    count: u64,
}

struct Counter {
    mode: Mode,
    windows: TumblingWindows,
}

const COUNTS: &str = "counts";
const WINDOWS: &str = "windows";
const CLEANUP: &str = "cleanup:";

fn window_key(key: &str, window: &Window) -> String {
    format!("{}|{}|{key}", window.start, window.end)
}

fn parse_window_key(text: &str) -> Option<(Window, &str)> {
    let mut parts = text.splitn(3, '|');
    let start = parts.next()?.parse().ok()?;
    let end = parts.next()?.parse().ok()?;
    Some((Window::new(start, end), parts.next()?))
}

impl Counter {
    fn emit_window(
        &self,
        ctx: &mut Context<'_>,
        key: &str,
        window: &Window,
        count: u64,
    ) -> Result<(), ProcessError> {
        ctx.emit(
            key,
            &WindowOutput {
                key,
                start: window.start,
                end: window.end,
                count,
            },
        )
    }
}

impl Processor for Counter {
    type Event = Event;

    fn service(&self) -> &'static str {
        "example-counter"
    }

    fn stores(&self) -> &'static [&'static str] {
        &[COUNTS, WINDOWS]
    }

    fn decode(&self, record: &Record<'_>) -> Result<Event, ProcessError> {
        let key = record
            .key
            .ok_or_else(|| ProcessError::Invalid("record has no key".into()))?;
        let key = std::str::from_utf8(key)
            .map_err(|e| ProcessError::Decode(format!("key is not UTF-8: {e}")))?;
        let payload = record
            .payload
            .ok_or_else(|| ProcessError::Invalid("record has no value".into()))?;
        let input: Input = serde_json::from_slice(payload)
            .map_err(|e| ProcessError::Decode(format!("value: {e}")))?;
        Ok(Event {
            key: key.to_owned(),
            ts: input.ts,
        })
    }

    fn event_time(&self, event: &Event) -> i64 {
        event.ts
    }

    fn process(&self, ctx: &mut Context<'_>, event: Event) -> Result<(), ProcessError> {
        match self.mode {
            Mode::Count => {
                let count = ctx.get::<u64>(COUNTS, &event.key)?.unwrap_or(0) + 1;
                ctx.put(COUNTS, &event.key, &count)?;
                ctx.emit(
                    &event.key,
                    &CountOutput {
                        key: &event.key,
                        count,
                    },
                )?;
                ctx.redis(RedisWrite::set(
                    format!("counter:{}", event.key),
                    count.to_string(),
                ));
                Ok(())
            }
            Mode::Window => {
                let window = self.windows.assign(event.ts);
                let state_key = window_key(&event.key, &window);
                match lateness(&window, ctx.watermark(), ctx.allowed_lateness()) {
                    Lateness::Late => {
                        ctx.late(format!(
                            "window [{}, {}) closed at watermark {}",
                            window.start,
                            window.end,
                            ctx.watermark()
                        ));
                    }
                    status => {
                        let count = ctx.get::<u64>(WINDOWS, &state_key)?.unwrap_or(0) + 1;
                        ctx.put(WINDOWS, &state_key, &count)?;
                        if status == Lateness::LateUpdate {
                            self.emit_window(ctx, &event.key, &window, count)?;
                        } else {
                            ctx.set_timer(window.max_timestamp(), &state_key)?;
                        }
                    }
                }
                Ok(())
            }
        }
    }

    fn on_timer(&self, ctx: &mut Context<'_>, timer: Timer) -> Result<(), ProcessError> {
        if let Some(state_key) = timer.key.strip_prefix(CLEANUP) {
            return Ok(ctx.delete(WINDOWS, state_key)?);
        }
        let Some((window, key)) = parse_window_key(&timer.key) else {
            return Err(ProcessError::Invalid(format!(
                "bad timer key {:?}",
                timer.key
            )));
        };
        let count = ctx.get::<u64>(WINDOWS, &timer.key)?.unwrap_or(0);
        self.emit_window(ctx, key, &window, count)?;
        if ctx.allowed_lateness() > 0 {
            let cleanup = window.cleanup_time(ctx.allowed_lateness());
            ctx.set_timer(cleanup, &format!("{CLEANUP}{}", timer.key))?;
        } else {
            ctx.delete(WINDOWS, &timer.key)?;
        }
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    let config: Config = load_config("example-counter");
    let size = i64::try_from(config.window_size.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let processor = Counter {
        mode: config.mode,
        windows: TumblingWindows::new(size),
    };
    trendstream_runtime::run_service(
        config.common.check_config,
        config.runtime,
        config.common.http_addr,
        processor,
    )
}
