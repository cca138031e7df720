//! The [`Processor`] the runtime drives: decoding, then the pure transitions of [`crate::user`]
//! against the `sessions` store, timers, outputs and Redis writes.

use trendstream_events::feature_store::{
    KeySpace, StoreEncodeError, WriteOp, write_session, write_user_features,
};
use trendstream_events::{ClickEvent, decode_click};
use trendstream_runtime::window::SessionWindows;
use trendstream_runtime::{Context, ProcessError, Processor, Record, Timer};

use crate::features::user_features;
use crate::user::{ClickOutcome, UserState};

/// The service name: metrics labels and the dead-letter topic `dlq.session-aggregator`.
pub const SERVICE: &str = "session-aggregator";
/// The state store: key = `user_id`, value = [`UserState`] (JSON).
pub const STORE: &str = "sessions";

pub struct SessionAggregator {
    sessions: SessionWindows,
    keys: KeySpace,
}

impl SessionAggregator {
    /// `gap_ms` must be positive (the configuration checks it).
    pub fn new(gap_ms: i64, keys: KeySpace) -> Self {
        Self {
            sessions: SessionWindows { gap: gap_ms.max(1) },
            keys,
        }
    }

    /// Queues a feature-store write. A user id that cannot be part of a key (the loadgen
    /// watermark users `__watermark__<n>`, for one) is sessionized but never written to Redis.
    fn store(
        &self,
        ctx: &mut Context<'_>,
        user_id: &str,
        ops: Result<Vec<WriteOp>, StoreEncodeError>,
    ) -> Result<(), ProcessError> {
        match ops {
            Ok(ops) => {
                for op in ops {
                    ctx.redis(op);
                }
                Ok(())
            }
            Err(StoreEncodeError::InvalidId { .. }) => {
                tracing::debug!(user_id, "user id is not a feature-store id; no Redis write");
                Ok(())
            }
            Err(err) => Err(ProcessError::Invalid(err.to_string())),
        }
    }

    fn write_features(
        &self,
        ctx: &mut Context<'_>,
        user_id: &str,
        state: &UserState,
    ) -> Result<(), ProcessError> {
        let features = user_features(user_id, state);
        self.store(ctx, user_id, write_user_features(&self.keys, &features))
    }
}

impl Processor for SessionAggregator {
    type Event = ClickEvent;

    fn service(&self) -> &'static str {
        SERVICE
    }

    fn stores(&self) -> &'static [&'static str] {
        &[STORE]
    }

    fn decode(&self, record: &Record<'_>) -> Result<ClickEvent, ProcessError> {
        decode_record(record)
    }

    fn event_time(&self, event: &ClickEvent) -> i64 {
        event.ts
    }

    fn process(&self, ctx: &mut Context<'_>, click: ClickEvent) -> Result<(), ProcessError> {
        let user_id = click.user_id.as_str();
        let mut state: UserState = ctx.get(STORE, user_id)?.unwrap_or_default();
        match state.apply_click(&click, self.sessions, ctx.watermark()) {
            ClickOutcome::Late { session, watermark } => {
                ctx.late(ClickOutcome::late_reason(&session, watermark));
                Ok(())
            }
            ClickOutcome::Accepted { session, removed } => {
                for window in removed {
                    ctx.delete_timer(window.max_timestamp(), user_id)?;
                }
                ctx.set_timer(session.max_timestamp(), user_id)?;
                ctx.put(STORE, user_id, &state)?;
                self.write_features(ctx, user_id, &state)
            }
        }
    }

    fn on_timer(&self, ctx: &mut Context<'_>, timer: Timer) -> Result<(), ProcessError> {
        let user_id = timer.key.as_str();
        let Some(mut state) = ctx.get::<UserState>(STORE, user_id)? else {
            tracing::warn!(user_id, time = timer.time, "timer for a user without state");
            return Ok(());
        };
        let Some(summary) = state.close(user_id, timer.time, self.sessions.gap) else {
            tracing::warn!(user_id, time = timer.time, "timer without an open session");
            return Ok(());
        };
        ctx.emit(user_id, &summary)?;
        self.store(ctx, user_id, write_session(&self.keys, &summary))?;
        ctx.put(STORE, user_id, &state)?;
        self.write_features(ctx, user_id, &state)
    }
}

/// A clickstream record: a [`ClickEvent`] (decoded and validated) keyed by its `user_id`.
/// Anything else is a record error (dead-letter topic).
pub fn decode_record(record: &Record<'_>) -> Result<ClickEvent, ProcessError> {
    let payload = record
        .payload
        .ok_or_else(|| ProcessError::Invalid("record has no value".into()))?;
    let click = decode_click(payload).map_err(|err| ProcessError::Decode(err.to_string()))?;
    let key = record.key.ok_or_else(|| {
        ProcessError::Invalid("record has no key (the clickstream is keyed by user_id)".into())
    })?;
    if key != click.user_id.as_bytes() {
        return Err(ProcessError::Invalid(format!(
            "record key {:?} differs from user_id {:?} (the clickstream is keyed by user_id)",
            String::from_utf8_lossy(key),
            click.user_id
        )));
    }
    Ok(click)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(key: Option<&'a [u8]>, payload: Option<&'a [u8]>) -> Record<'a> {
        Record {
            topic: "clickstream",
            partition: 0,
            offset: 0,
            key,
            payload,
            timestamp: None,
        }
    }

    /// (key, value, expected error text; `None` = decodes)
    type Case<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, Option<&'a str>);

    #[test]
    fn decoding_rejects_what_cannot_be_sessionized() {
        let good = br#"{"event_id":"e1","user_id":"u1","event_type":"page_view","ts":5}"#;
        let cases: [Case<'_>; 6] = [
            (Some(b"u1"), Some(good), None),
            (Some(b"u1"), None, Some("no value")),
            (None, Some(good), Some("no key")),
            (Some(b"u2"), Some(good), Some("differs from user_id")),
            (Some(b"u1"), Some(b"{not json"), Some("(root)")),
            (
                Some(b"u1"),
                Some(br#"{"event_id":"e1","user_id":"u1","event_type":"teleport","ts":5}"#),
                Some("event_type"),
            ),
        ];
        for (key, payload, error) in cases {
            let got = decode_record(&record(key, payload));
            match (got, error) {
                (Ok(click), None) => assert_eq!((click.user_id.as_str(), click.ts), ("u1", 5)),
                (Err(err), Some(text)) => {
                    assert!(err.is_record_error(), "{err}");
                    assert!(
                        err.to_string().contains(text),
                        "{err} should mention {text}"
                    );
                }
                (got, _) => panic!("{key:?}/{payload:?}: unexpected {got:?}"),
            }
        }
    }
}
