//! A user's state and its transitions: a click joins, opens or merges sessions (or is late);
//! a timer closes a session.
//!
//! The state of one user (one entry of the `sessions` store, key = `user_id`) holds the user's
//! open sessions, ordered by start and pairwise more than a gap apart, and the totals of the
//! sessions already closed. Everything here is pure: the processor reads the state, calls one
//! transition, registers/deletes the timers the transition names, and writes the state back.

use serde::{Deserialize, Serialize};
use trendstream_events::{ClickEvent, SessionSummary};
use trendstream_runtime::window::{Lateness, SessionWindows, Window, lateness};

use crate::session::{SessionAggregate, Stamped, keep_latest};

/// Allowed lateness of sessions: none. A session is emitted once, when the watermark passes
/// its end; a click that would land in (or open) a session the watermark has passed is late.
pub const ALLOWED_LATENESS_MS: i64 = 0;

/// Everything kept for one user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    /// Open sessions, ordered by start; their windows neither overlap nor touch.
    pub open: Vec<SessionAggregate>,
    /// Sessions closed so far.
    pub closed_sessions: u64,
    /// Sum of the closed sessions' `duration_ms`.
    pub closed_duration_ms: i64,
    /// Category of the user's latest on-time click naming one (ties: the later arrival).
    pub last_category: Option<Stamped>,
    /// Largest event time of the user's on-time clicks.
    pub updated_ts: Option<i64>,
}

/// What a click did to the user's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClickOutcome {
    /// The session the click would belong to has already closed (its `max_timestamp` is at or
    /// below the watermark): the state is unchanged and the click goes to the late topic.
    Late { session: Window, watermark: i64 },
    /// The click is in `session`; the open sessions in `removed` were folded into it, so their
    /// timers must be deleted (and `session`'s timer set).
    Accepted {
        session: Window,
        removed: Vec<Window>,
    },
}

impl ClickOutcome {
    /// The reason header of a late click.
    pub fn late_reason(session: &Window, watermark: i64) -> String {
        format!(
            "session [{}, {}) closed: its end - 1 is at or below the watermark {watermark}",
            session.start, session.end
        )
    }
}

impl UserState {
    /// The windows of the open sessions, in start order.
    pub fn windows(&self, gap: i64) -> Vec<Window> {
        self.open.iter().map(|s| s.window(gap)).collect()
    }

    /// Applies a click seen at `watermark` (the partition's watermark before the click).
    pub fn apply_click(
        &mut self,
        click: &ClickEvent,
        sessions: SessionWindows,
        watermark: i64,
    ) -> ClickOutcome {
        let gap = sessions.gap;
        let merge = sessions.insert(&self.windows(gap), click.ts);
        if lateness(&merge.session, watermark, ALLOWED_LATENESS_MS) == Lateness::Late {
            return ClickOutcome::Late {
                session: merge.session,
                watermark,
            };
        }
        let removed: Vec<Window> = merge.replaced.into_iter().chain(merge.merged).collect();
        let (touched, kept): (Vec<SessionAggregate>, Vec<SessionAggregate>) =
            std::mem::take(&mut self.open)
                .into_iter()
                .partition(|s| removed.contains(&s.window(gap)));
        let mut touched = touched.into_iter();
        let aggregate = match touched.next() {
            None => SessionAggregate::new(click),
            Some(mut aggregate) => {
                for other in touched {
                    aggregate.merge(&other);
                }
                aggregate.add(click);
                aggregate
            }
        };
        let at = kept.partition_point(|s| s.first_ts < aggregate.first_ts);
        self.open = kept;
        let session = aggregate.window(gap);
        debug_assert_eq!(session, merge.session);
        self.open.insert(at, aggregate);
        keep_latest(&mut self.last_category, click.ts, click.category.as_deref());
        self.updated_ts = Some(self.updated_ts.map_or(click.ts, |t| t.max(click.ts)));
        ClickOutcome::Accepted { session, removed }
    }

    /// Closes the open session whose timer (its `max_timestamp`) is `timer_time`, returning
    /// its summary; `None` when no open session has that end (nothing changes).
    pub fn close(&mut self, user_id: &str, timer_time: i64, gap: i64) -> Option<SessionSummary> {
        let index = self
            .open
            .iter()
            .position(|s| s.window(gap).max_timestamp() == timer_time)?;
        let session = self.open.remove(index);
        self.closed_sessions += 1;
        self.closed_duration_ms = self
            .closed_duration_ms
            .saturating_add(session.duration_ms());
        Some(session.summary(user_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::tests::click;

    const MIN: i64 = 60_000;
    const GAP: i64 = 30 * MIN;
    const SESSIONS: SessionWindows = SessionWindows { gap: GAP };
    const NO_WATERMARK: i64 = i64::MIN;

    fn spans(state: &UserState) -> Vec<(i64, i64, u64)> {
        state
            .open
            .iter()
            .map(|s| (s.first_ts, s.last_ts, s.event_count))
            .collect()
    }

    #[test]
    fn clicks_open_join_merge_or_are_late() {
        struct Case {
            name: &'static str,
            /// (ts, watermark before it) in arrival order
            clicks: Vec<(i64, i64)>,
            /// outcome of the last click: None = late
            last_removed: Option<Vec<Window>>,
            open: Vec<(i64, i64, u64)>,
        }
        let cases = [
            Case {
                name: "gap exactly 30 min joins",
                clicks: vec![(0, NO_WATERMARK), (GAP, NO_WATERMARK)],
                last_removed: Some(vec![Window::new(0, GAP)]),
                open: vec![(0, GAP, 2)],
            },
            Case {
                name: "30 min + 1 ms opens a new session",
                clicks: vec![(0, NO_WATERMARK), (GAP + 1, NO_WATERMARK)],
                last_removed: Some(vec![]),
                open: vec![(0, 0, 1), (GAP + 1, GAP + 1, 1)],
            },
            Case {
                name: "behind the watermark but bridging two open sessions merges them",
                clicks: vec![
                    (0, NO_WATERMARK),
                    (GAP + 10_000, -1),
                    (15 * MIN, GAP - 20_001),
                ],
                last_removed: Some(vec![
                    Window::new(0, GAP),
                    Window::new(GAP + 10_000, 2 * GAP + 10_000),
                ]),
                open: vec![(0, GAP + 10_000, 3)],
            },
            Case {
                name: "a click in an open session behind the watermark joins it",
                clicks: vec![(10 * MIN, NO_WATERMARK), (MIN, 20 * MIN)],
                last_removed: Some(vec![Window::new(10 * MIN, 10 * MIN + GAP)]),
                open: vec![(MIN, 10 * MIN, 2)],
            },
            Case {
                name: "a new session whose end - 1 equals the watermark is late",
                clicks: vec![(2 * GAP, NO_WATERMARK), (0, GAP - 1)],
                last_removed: None,
                open: vec![(2 * GAP, 2 * GAP, 1)],
            },
            Case {
                name: "a new session ending 1 ms after the watermark is on time",
                clicks: vec![(2 * GAP, NO_WATERMARK), (0, GAP - 2)],
                last_removed: Some(vec![]),
                open: vec![(0, 0, 1), (2 * GAP, 2 * GAP, 1)],
            },
        ];
        for case in cases {
            let mut state = UserState::default();
            let mut outcome = None;
            for (ts, watermark) in &case.clicks {
                outcome = Some(state.apply_click(
                    &click("u", *ts, "page_view", None, None),
                    SESSIONS,
                    *watermark,
                ));
            }
            match (outcome, &case.last_removed) {
                (Some(ClickOutcome::Accepted { removed, session }), Some(expected)) => {
                    assert_eq!(&removed, expected, "{}", case.name);
                    assert!(
                        state.windows(GAP).contains(&session),
                        "{}: {session:?}",
                        case.name
                    );
                }
                (Some(ClickOutcome::Late { .. }), None) => {}
                (got, _) => panic!("{}: unexpected outcome {got:?}", case.name),
            }
            assert_eq!(spans(&state), case.open, "{}", case.name);
        }
    }

    #[test]
    fn a_late_click_leaves_the_state_unchanged() {
        let mut state = UserState::default();
        state.apply_click(
            &click("u", 5 * GAP, "page_view", Some("a"), None),
            SESSIONS,
            NO_WATERMARK,
        );
        let before = state.clone();
        let outcome = state.apply_click(
            &click("u", 0, "add_to_cart", Some("b"), None),
            SESSIONS,
            4 * GAP,
        );
        assert_eq!(
            outcome,
            ClickOutcome::Late {
                session: Window::new(0, GAP),
                watermark: 4 * GAP
            }
        );
        assert_eq!(state, before);
    }

    #[test]
    fn timer_close_emits_exactly_one_summary_with_the_counts() {
        let mut state = UserState::default();
        let clicks = [
            click("u", 0, "page_view", None, Some("web")),
            click("u", MIN, "product_view", Some("books"), None),
            click("u", 2 * MIN, "add_to_cart", Some("books"), None),
            click("u", 3 * MIN, "checkout_start", None, None),
            click("u", 3 * MIN + GAP + 1, "search", Some("toys"), None),
        ];
        for c in &clicks {
            state.apply_click(c, SESSIONS, NO_WATERMARK);
        }
        let first_end = 3 * MIN + GAP - 1;
        let summary = state
            .close("u", first_end, GAP)
            .expect("a session ends there");
        assert_eq!(state.close("u", first_end, GAP), None, "closed only once");
        assert_eq!(summary.session_id, SessionSummary::deterministic_id("u", 0));
        assert_eq!((summary.start_ts, summary.end_ts), (0, 3 * MIN));
        assert_eq!(summary.duration_ms, 3 * MIN);
        assert_eq!(
            (
                summary.event_count,
                summary.page_views,
                summary.product_views,
                summary.cart_adds,
                summary.checkouts,
                summary.searches
            ),
            (4, 1, 1, 1, 1, 0)
        );
        assert_eq!(summary.categories, ["books"]);
        assert_eq!(summary.last_category.as_deref(), Some("books"));
        assert_eq!(summary.device.as_deref(), Some("web"));
        assert_eq!(state.closed_sessions, 1);
        assert_eq!(state.closed_duration_ms, 3 * MIN);
        assert_eq!(
            spans(&state),
            vec![(3 * MIN + GAP + 1, 3 * MIN + GAP + 1, 1)]
        );
        assert_eq!(
            state.last_category.as_ref().map(|c| c.value.as_str()),
            Some("toys")
        );
        assert_eq!(state.updated_ts, Some(3 * MIN + GAP + 1));
        assert_eq!(state.close("u", 12_345, GAP), None, "no session ends there");
    }
}
