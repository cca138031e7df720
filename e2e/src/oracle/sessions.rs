//! The session-aggregator oracle: a deliberately plain re-implementation of the semantics in
//! docs/processors.md ("session-aggregator"), sharing no code with the processor.
//!
//! It keeps every click of every open session in a list and recomputes everything from those
//! lists when asked, instead of maintaining running aggregates: a session is the list of its
//! clicks; merging is list concatenation; a summary is a sort and a count.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde::Deserialize;
use trendstream_events::feature_store::{KeySpace, SESSIONS_PER_USER, valid_id};
use trendstream_events::{ClickEvent, ClickEventType, SessionSummary, UserFeatures, decode_click};

/// One line of loadgen's event file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct EventLine {
    pub topic: String,
    pub partition: i32,
    pub key: Option<String>,
    pub value: String,
}

impl EventLine {
    /// The record to produce: same key and value, to the recorded partition.
    pub fn to_outgoing(&self) -> crate::kafka::Outgoing {
        crate::kafka::Outgoing {
            key: self.key.clone(),
            value: self.value.clone().into_bytes(),
            partition: Some(self.partition),
        }
    }
}

/// Reads an event file (JSON Lines).
pub fn read_event_file(path: &Path) -> anyhow::Result<Vec<EventLine>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the event file {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not an event line", path.display(), index + 1))
        })
        .collect()
}

/// The settings the oracle needs: the job's.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The clickstream topic of the event file.
    pub topic: String,
    /// `SESSION_GAP`.
    pub gap_ms: i64,
    /// `MAX_OUT_OF_ORDERNESS`.
    pub bound_ms: i64,
    /// `REDIS_KEY_PREFIX`.
    pub redis_prefix: String,
}

impl Settings {
    /// The defaults: 30 min gap, 30 s bound, prefix `ts`.
    pub fn new(topic: &str) -> Self {
        Self {
            topic: topic.to_owned(),
            gap_ms: 30 * 60 * 1000,
            bound_ms: 30 * 1000,
            redis_prefix: "ts".to_owned(),
        }
    }
}

/// What a correct run leaves behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// Per user (the output key), the SessionSummary JSON records in output order.
    pub summaries: BTreeMap<String, Vec<String>>,
    /// Redis string keys (user features) and their final values.
    pub redis_strings: BTreeMap<String, String>,
    /// Redis sorted sets (user sessions): members with scores, in `ZRANGE` order.
    pub redis_sorted_sets: BTreeMap<String, Vec<(String, i64)>>,
    /// Payloads sent to the late topic, in partition then arrival order.
    pub late: Vec<String>,
    /// Payloads sent to the dead-letter topic, in partition then arrival order.
    pub dead: Vec<String>,
    /// Clicks that merged two or more open sessions (to check a data set exercises merging).
    pub bridging_clicks: usize,
}

impl Expected {
    /// Number of summaries over all users.
    pub fn summary_count(&self) -> usize {
        self.summaries.values().map(Vec::len).sum()
    }
}

#[derive(Debug, Default)]
struct User {
    /// Open sessions, each the list of its clicks in arrival order.
    open: Vec<Vec<ClickEvent>>,
    closed: u64,
    closed_duration_total: i64,
    /// (ts, category) of the latest on-time click naming a category.
    last_category: Option<(i64, String)>,
    max_ts: Option<i64>,
}

fn first_ts(session: &[ClickEvent]) -> i64 {
    session.iter().map(|c| c.ts).min().unwrap_or(i64::MAX)
}

fn last_ts(session: &[ClickEvent]) -> i64 {
    session.iter().map(|c| c.ts).max().unwrap_or(i64::MIN)
}

fn count(session: &[ClickEvent], kind: ClickEventType) -> u64 {
    session.iter().filter(|c| c.event_type == kind).count() as u64
}

fn summarize(user_id: &str, session: &[ClickEvent]) -> SessionSummary {
    // Stable: clicks at the same event time stay in arrival order.
    let mut sorted: Vec<&ClickEvent> = session.iter().collect();
    sorted.sort_by_key(|c| c.ts);
    let mut categories: Vec<String> = Vec::new();
    for c in &sorted {
        if let Some(category) = &c.category
            && !categories.contains(category)
        {
            categories.push(category.clone());
        }
    }
    let start = first_ts(session);
    let end = last_ts(session);
    SessionSummary {
        session_id: SessionSummary::deterministic_id(user_id, start),
        user_id: user_id.to_owned(),
        start_ts: start,
        end_ts: end,
        duration_ms: end - start,
        event_count: session.len() as u64,
        page_views: count(session, ClickEventType::PageView),
        product_views: count(session, ClickEventType::ProductView),
        searches: count(session, ClickEventType::Search),
        cart_adds: count(session, ClickEventType::AddToCart),
        cart_removes: count(session, ClickEventType::RemoveFromCart),
        checkouts: count(session, ClickEventType::CheckoutStart),
        last_category: sorted.iter().rev().find_map(|c| c.category.clone()),
        categories,
        device: sorted.iter().rev().find_map(|c| c.device.clone()),
    }
}

fn features(user_id: &str, user: &User) -> UserFeatures {
    let current = user.open.iter().max_by_key(|s| first_ts(s));
    UserFeatures {
        user_id: user_id.to_owned(),
        current_session_length_ms: current.map_or(0, |s| last_ts(s) - first_ts(s)),
        session_events: current.map_or(0, |s| s.len() as u64),
        views: current.map_or(0, |s| {
            count(s, ClickEventType::PageView) + count(s, ClickEventType::ProductView)
        }),
        cart_adds: current.map_or(0, |s| count(s, ClickEventType::AddToCart)),
        last_category: user.last_category.as_ref().map(|(_, c)| c.clone()),
        session_count: user.closed,
        avg_session_duration_ms: if user.closed == 0 {
            0
        } else {
            user.closed_duration_total / user.closed as i64
        },
        updated_ts: user.max_ts.unwrap_or(0),
    }
}

struct Run<'a> {
    settings: &'a Settings,
    keys: KeySpace,
    expected: Expected,
}

impl Run<'_> {
    fn write_features(&mut self, user_id: &str, user: &User) {
        if valid_id(user_id) {
            let value = serde_json::to_string(&features(user_id, user)).unwrap_or_default();
            self.expected
                .redis_strings
                .insert(self.keys.user_features(user_id), value);
        }
    }

    fn close(&mut self, user_id: &str, user: &mut User, index: usize) {
        let session = user.open.remove(index);
        let summary = summarize(user_id, &session);
        let json = serde_json::to_string(&summary).unwrap_or_default();
        user.closed += 1;
        user.closed_duration_total += summary.duration_ms;
        self.expected
            .summaries
            .entry(user_id.to_owned())
            .or_default()
            .push(json.clone());
        if valid_id(user_id) {
            let set = self
                .expected
                .redis_sorted_sets
                .entry(self.keys.user_sessions(user_id))
                .or_default();
            set.retain(|(member, _)| *member != json);
            set.push((json, summary.end_ts));
            set.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
            while set.len() > SESSIONS_PER_USER {
                set.remove(0);
            }
        }
        self.write_features(user_id, user);
    }

    fn partition(&mut self, lines: &[&EventLine]) {
        let gap = self.settings.gap_ms;
        let mut users: BTreeMap<String, User> = BTreeMap::new();
        let mut max_seen: Option<i64> = None;
        let mut watermark = i64::MIN;
        for line in lines {
            let click = match decode_click(line.value.as_bytes()) {
                Ok(click) if line.key.as_deref() == Some(click.user_id.as_str()) => click,
                _ => {
                    self.expected.dead.push(line.value.clone());
                    continue;
                }
            };
            let user_id = click.user_id.clone();
            let user = users.entry(user_id.clone()).or_default();
            let ts = click.ts;
            let touching: Vec<usize> = (0..user.open.len())
                .filter(|&i| {
                    let s = &user.open[i];
                    first_ts(s) <= ts.saturating_add(gap) && ts <= last_ts(s).saturating_add(gap)
                })
                .collect();
            let last = touching
                .iter()
                .map(|&i| last_ts(&user.open[i]))
                .chain([ts])
                .max()
                .unwrap_or(ts);
            if last.saturating_add(gap) - 1 <= watermark {
                self.expected.late.push(line.value.clone());
            } else {
                if touching.len() >= 2 {
                    self.expected.bridging_clicks += 1;
                }
                let mut session: Vec<ClickEvent> = Vec::new();
                for &i in touching.iter().rev() {
                    let mut taken = user.open.remove(i);
                    taken.append(&mut session);
                    session = taken;
                }
                session.push(click.clone());
                user.open.push(session);
                if let Some(category) = &click.category
                    && user.last_category.as_ref().is_none_or(|(t, _)| ts >= *t)
                {
                    user.last_category = Some((ts, category.clone()));
                }
                user.max_ts = Some(user.max_ts.map_or(ts, |m| m.max(ts)));
                self.write_features(&user_id, user);
            }
            // The record advances the partition's watermark, then due timers fire in
            // (time, user) order.
            if max_seen.is_none_or(|m| ts > m) {
                max_seen = Some(ts);
                watermark = watermark.max(ts - self.settings.bound_ms - 1);
            }
            loop {
                let due = users
                    .iter()
                    .flat_map(|(id, u)| {
                        u.open
                            .iter()
                            .enumerate()
                            .map(move |(i, s)| (last_ts(s).saturating_add(gap) - 1, id.clone(), i))
                    })
                    .filter(|(time, _, _)| *time <= watermark)
                    .min();
                let Some((_, id, index)) = due else { break };
                let mut user = users.remove(&id).unwrap_or_default();
                self.close(&id, &mut user, index);
                users.insert(id, user);
            }
        }
    }
}

/// Computes what session-aggregator must produce for the records of `settings.topic` in
/// `lines` (an event file, in file order).
pub fn expected(settings: &Settings, lines: &[EventLine]) -> Expected {
    let mut by_partition: BTreeMap<i32, Vec<&EventLine>> = BTreeMap::new();
    for line in lines.iter().filter(|l| l.topic == settings.topic) {
        by_partition.entry(line.partition).or_default().push(line);
    }
    let mut run = Run {
        settings,
        keys: KeySpace::new(settings.redis_prefix.clone()),
        expected: Expected::default(),
    };
    for lines in by_partition.values() {
        run.partition(lines);
    }
    run.expected
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn line(partition: i32, user: &str, ts: i64, kind: &str, category: Option<&str>) -> EventLine {
        let mut value = serde_json::json!({
            "event_id": format!("{user}-{ts}"),
            "user_id": user,
            "event_type": kind,
            "ts": ts,
        });
        if let Some(c) = category {
            value["category"] = c.into();
        }
        EventLine {
            topic: "clicks".into(),
            partition,
            key: Some(user.to_owned()),
            value: value.to_string(),
        }
    }

    fn summaries(expected: &Expected, user: &str) -> Vec<(i64, i64, u64)> {
        expected
            .summaries
            .get(user)
            .into_iter()
            .flatten()
            .map(|json| {
                let s: SessionSummary =
                    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"));
                (s.start_ts, s.end_ts, s.event_count)
            })
            .collect()
    }

    #[test]
    fn sessions_of_a_small_run() {
        let gap = 30 * MIN;
        let lines = vec![
            line(0, "a", 0, "page_view", None),
            line(0, "a", gap, "product_view", Some("books")), // exactly a gap: joins
            line(0, "a", 2 * gap + 1, "search", None),        // gap + 1 ms: new session
            line(1, "b", 0, "page_view", None),
            line(1, "b", gap + 10_000, "page_view", None), // b's first session still open
            line(1, "b", 15 * MIN, "add_to_cart", Some("toys")), // bridges the two
            line(1, "b", 5 * gap, "page_view", None),      // closes the merged session
            line(1, "b", 0, "page_view", None),            // late
            EventLine {
                value: "{not json".into(),
                ..line(1, "b", 0, "page_view", None)
            },
            line(0, "w", 10 * gap, "page_view", None), // watermark record for partition 0
        ];
        let expected = expected(&Settings::new("clicks"), &lines);
        assert_eq!(
            summaries(&expected, "a"),
            [(0, gap, 2), (2 * gap + 1, 2 * gap + 1, 1)]
        );
        assert_eq!(summaries(&expected, "b"), [(0, gap + 10_000, 3)]);
        assert_eq!(expected.bridging_clicks, 1);
        assert_eq!(expected.late.len(), 1);
        assert_eq!(expected.dead, ["{not json"]);
        let features: UserFeatures =
            serde_json::from_str(&expected.redis_strings["ts:user:b:features"]).unwrap();
        assert_eq!(
            (
                features.session_count,
                features.avg_session_duration_ms,
                features.session_events,
                features.last_category.as_deref(),
                features.updated_ts
            ),
            (1, gap + 10_000, 1, Some("toys"), 5 * gap)
        );
        assert_eq!(expected.redis_sorted_sets["ts:user:a:sessions"].len(), 2);
    }
}
