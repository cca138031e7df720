//! The runtime side: decoding by topic, lateness, per-user state and timers, alert outputs.
//!
//! State: store [`USERS`], key `user_id`, value [`UserState`] (pending events and each rule's
//! state). An on-time event is added to its user's pending events with an event-time timer at
//! its `ts` (timer key `user:<user_id>`); when a timer fires, the user's pending events with
//! `ts <= watermark` (and absence deadlines `<= watermark`) are evaluated in event-time order.
//! An event with `ts <= watermark` when it arrives is late: it goes to the late topic and is not
//! evaluated.

use trendstream_events::feature_store::{KeySpace, valid_id, write_alert};
use trendstream_events::{decode_click, decode_order};
use trendstream_runtime::{Context, ProcessError, Processor, Record, Timer};

use crate::eval::{Event, UserState};
use crate::rules::Rule;

/// The state store of per-user state.
pub const USERS: &str = "users";
const TIMER_PREFIX: &str = "user:";

/// A decoded input event and its user.
#[derive(Debug, Clone)]
pub struct Input {
    pub user_id: String,
    pub event: Event,
}

/// The fraud-detector processor.
pub struct FraudDetector {
    rules: Vec<Rule>,
    click_topics: Vec<String>,
    keys: KeySpace,
}

impl FraudDetector {
    /// `click_topics`: input topics carrying ClickEvents; every other input carries OrderEvents.
    pub fn new(rules: Vec<Rule>, click_topics: Vec<String>, keys: KeySpace) -> Self {
        Self {
            rules,
            click_topics,
            keys,
        }
    }

    fn timer_key(user_id: &str) -> String {
        format!("{TIMER_PREFIX}{user_id}")
    }
}

impl Processor for FraudDetector {
    type Event = Input;

    fn service(&self) -> &'static str {
        "fraud-detector"
    }

    fn stores(&self) -> &'static [&'static str] {
        &[USERS]
    }

    fn decode(&self, record: &Record<'_>) -> Result<Input, ProcessError> {
        let payload = record
            .payload
            .ok_or_else(|| ProcessError::Invalid("record has no value".into()))?;
        if self.click_topics.iter().any(|t| t == record.topic) {
            let click = decode_click(payload)
                .map_err(|e| ProcessError::Decode(format!("click event: {e}")))?;
            Ok(Input {
                user_id: click.user_id.clone(),
                event: Event::from_click(&click),
            })
        } else {
            let order = decode_order(payload)
                .map_err(|e| ProcessError::Decode(format!("order event: {e}")))?;
            Ok(Input {
                user_id: order.user_id.clone(),
                event: Event::from_order(&order),
            })
        }
    }

    fn event_time(&self, input: &Input) -> i64 {
        input.event.ts
    }

    fn process(&self, ctx: &mut Context<'_>, input: Input) -> Result<(), ProcessError> {
        let watermark = ctx.watermark();
        let ts = input.event.ts;
        if ts <= watermark {
            ctx.late(format!(
                "event time {ts} is at or before the partition watermark {watermark}"
            ));
            return Ok(());
        }
        let mut state: UserState = ctx.get(USERS, &input.user_id)?.unwrap_or_default();
        if !state.insert(input.event) {
            tracing::debug!(user_id = input.user_id, "duplicate event_id ignored");
            return Ok(());
        }
        ctx.put(USERS, &input.user_id, &state)?;
        ctx.set_timer(ts, &Self::timer_key(&input.user_id))?;
        Ok(())
    }

    fn on_timer(&self, ctx: &mut Context<'_>, timer: Timer) -> Result<(), ProcessError> {
        let Some(user_id) = timer.key.strip_prefix(TIMER_PREFIX) else {
            tracing::warn!(key = timer.key, "unknown timer ignored");
            return Ok(());
        };
        let Some(mut state) = ctx.get::<UserState>(USERS, user_id)? else {
            return Ok(());
        };
        let watermark = ctx.watermark();
        let advanced = state.advance(&self.rules, user_id, watermark);
        ctx.put(USERS, user_id, &state)?;
        let key = timer.key.clone();
        for ts in advanced.evaluated_ts {
            if ts != timer.time {
                ctx.delete_timer(ts, &key)?;
            }
        }
        for deadline in advanced.deadlines {
            if deadline > watermark {
                ctx.set_timer(deadline, &key)?;
            }
        }
        for alert in &advanced.alerts {
            tracing::info!(
                rule = alert.rule,
                user_id = alert.user_id,
                alert_id = alert.alert_id,
                "fraud alert"
            );
            ctx.emit(&alert.user_id, alert)?;
            if !valid_id(&alert.user_id) {
                tracing::warn!(
                    user_id = alert.user_id,
                    "user id cannot be a Redis key; alert written to Kafka only"
                );
                continue;
            }
            match write_alert(&self.keys, alert) {
                Ok(ops) => {
                    for op in ops {
                        ctx.redis(op);
                    }
                }
                Err(err) => tracing::warn!(error = %err, "alert not written to Redis"),
            }
        }
        Ok(())
    }
}
