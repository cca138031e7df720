//! session-aggregator: per-user session windows over the clickstream, session summaries and
//! live user features.
//!
//! This page is the reference for what the processor computes (docs/processors.md repeats it
//! for the e2e oracle). The runtime's common semantics apply: one watermark per input partition
//! (`max event time seen - MAX_OUT_OF_ORDERNESS - 1`), a record is processed against the
//! watermark as it was before it, then advances it, then every due timer fires in
//! `(time, user_id)` order.
//!
//! # Input
//!
//! Topic `KAFKA_INPUT_TOPICS` (the clickstream): [`trendstream_events::ClickEvent`] JSON, Kafka
//! key = `user_id`. A record without a value, that does not decode or validate, without a key,
//! or whose key differs from its `user_id`, goes to the dead-letter topic and changes nothing.
//!
//! # Sessions
//!
//! - A click at `ts` opens the window `[ts, ts + SESSION_GAP)` (default `30m`); windows of the
//!   same user that overlap or *touch* merge ([`trendstream_runtime::window::SessionWindows`]).
//!   So a click exactly one gap after the previous one joins its session, one gap + 1 ms later
//!   opens a new one, and a click between two open sessions within a gap of both merges them.
//!   A session's window is `[first click, last click + gap)`.
//! - A user may have several open sessions (clicks out of order by more than a gap within the
//!   out-of-orderness bound). Each has an event-time timer at `window end - 1`; merged-away
//!   sessions' timers are deleted.
//! - Lateness: allowed lateness is 0 for sessions, whatever `ALLOWED_LATENESS` says (a warning
//!   is logged when it is set). A click whose session after merging would have
//!   `end - 1 <= watermark` is late: it goes to the late topic (`KAFKA_LATE_TOPIC`, header
//!   `error` = the reason) and changes no state. Only a click that opens a new session can be
//!   late: a click joining an open session is on time even when it is far behind the watermark,
//!   because open sessions have not reached their timer yet.
//! - On the timer (the watermark reached `end - 1`) the session closes: its
//!   [`trendstream_events::SessionSummary`] goes to `KAFKA_OUTPUT_TOPIC` (key = `user_id`) and
//!   to Redis ([`trendstream_events::feature_store::write_session`]), the user's features are
//!   rewritten, and the session leaves the state. Exactly one summary per session.
//!
//! # The summary
//!
//! `session_id` = [`trendstream_events::SessionSummary::deterministic_id`]`(user_id, start_ts)`;
//! `start_ts`/`end_ts` = first/last click time; `duration_ms` = their difference; the counts by
//! event type; `last_category` and `device` = of the click with the largest event time that
//! names one (equal times: the later arrival in the partition); `categories` = distinct
//! categories ordered by the earliest event time each occurs at (equal times: the earlier
//! arrival first). Equivalently: sort the session's clicks by event time, stably in arrival
//! order, then take the last category/device and the distinct categories in that order.
//!
//! # Live user features
//!
//! Written to Redis ([`trendstream_events::feature_store::write_user_features`], key
//! `{REDIS_KEY_PREFIX}:user:{user_id}:features`, TTL of the layout) after every on-time click
//! and after every session close, as a function of the user's state: see [`features`] for the
//! exact definitions ("current session" = the user's open session with the latest start).
//!
//! User ids that cannot be part of a Redis key
//! ([`trendstream_events::feature_store::valid_id`], e.g. loadgen's watermark users
//! `__watermark__<n>`) are sessionized and summarized on Kafka, but nothing is written to Redis
//! for them.
//!
//! # State
//!
//! Store `sessions`: key `user_id`, value [`user::UserState`]: the open sessions' aggregates
//! and the closed-session totals. The entry of a user stays after its sessions close (it
//! carries `session_count` and the average duration), one small record per user.

pub mod config;
pub mod features;
pub mod processor;
pub mod session;
pub mod user;

pub use config::Config;
pub use processor::SessionAggregator;
