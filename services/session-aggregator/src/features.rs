//! The live user features written to Redis: a pure function of the user's state.
//!
//! - The *current session* is the user's open session with the latest start (sessions of a
//!   user never overlap, so "latest start" is also "most recent"). It is not necessarily the
//!   session the last click landed in: a click may land in an older session that is still
//!   open. With no open session the current-session fields are zero.
//! - `current_session_length_ms`: current session's last minus first click time.
//! - `session_events`, `views` (page + product views), `cart_adds`: of the current session.
//! - `last_category`: category of the user's latest on-time click that named one, over all the
//!   user's sessions, open or closed (ties in event time: the later arrival); kept after the
//!   sessions close.
//! - `session_count`: sessions of the user closed so far (an open session is not counted).
//! - `avg_session_duration_ms`: sum of the closed sessions' `duration_ms` divided by
//!   `session_count`, rounded down; 0 before the first close.
//! - `updated_ts`: the largest event time of the user's on-time clicks.

use trendstream_events::UserFeatures;

use crate::user::UserState;

/// The features of `user_id` given its state.
pub fn user_features(user_id: &str, state: &UserState) -> UserFeatures {
    let current = state.open.iter().max_by_key(|s| s.first_ts);
    let avg_session_duration_ms = match i64::try_from(state.closed_sessions) {
        Ok(count) if count > 0 => state.closed_duration_ms / count,
        _ => 0,
    };
    UserFeatures {
        user_id: user_id.to_owned(),
        current_session_length_ms: current.map_or(0, |s| s.duration_ms()),
        session_events: current.map_or(0, |s| s.event_count),
        views: current.map_or(0, |s| s.views()),
        cart_adds: current.map_or(0, |s| s.cart_adds),
        last_category: state.last_category.as_ref().map(|c| c.value.clone()),
        session_count: state.closed_sessions,
        avg_session_duration_ms,
        updated_ts: state.updated_ts.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::tests::click;
    use trendstream_runtime::window::SessionWindows;

    const MIN: i64 = 60_000;
    const GAP: i64 = 30 * MIN;

    enum Step {
        /// A click: (ts, event type, category).
        Click(i64, &'static str, Option<&'static str>),
        /// The timer at this time fires.
        Close(i64),
    }

    /// (current length, session events, views, cart adds, last category, session count,
    /// average duration, updated_ts)
    type Features<'a> = (i64, u64, u64, u64, Option<&'a str>, u64, i64, i64);

    #[test]
    fn features_follow_the_state() {
        let sessions = SessionWindows { gap: GAP };
        let late_start = 2 * MIN + GAP + 1;
        let steps: [(&str, Step, Features<'static>); 6] = [
            (
                "first click",
                Step::Click(0, "page_view", None),
                (0, 1, 1, 0, None, 0, 0, 0),
            ),
            (
                "same session",
                Step::Click(MIN, "product_view", Some("books")),
                (MIN, 2, 2, 0, Some("books"), 0, 0, MIN),
            ),
            (
                "a cart add",
                Step::Click(2 * MIN, "add_to_cart", Some("books")),
                (2 * MIN, 3, 2, 1, Some("books"), 0, 0, 2 * MIN),
            ),
            (
                "the latest-starting open session is current",
                Step::Click(late_start, "search", Some("toys")),
                (0, 1, 0, 0, Some("toys"), 0, 0, late_start),
            ),
            (
                "a click into the older open session changes neither current nor last category",
                Step::Click(90_000, "add_to_cart", Some("shoes")),
                (0, 1, 0, 0, Some("toys"), 0, 0, late_start),
            ),
            (
                "after the first close",
                Step::Close(2 * MIN + GAP - 1),
                (0, 1, 0, 0, Some("toys"), 1, 2 * MIN, late_start),
            ),
        ];
        let mut state = UserState::default();
        for (name, step, expected) in steps {
            match step {
                Step::Click(ts, kind, category) => {
                    state.apply_click(&click("u", ts, kind, category, None), sessions, i64::MIN);
                }
                Step::Close(time) => {
                    assert!(state.close("u", time, GAP).is_some(), "{name}");
                }
            }
            let f = user_features("u", &state);
            assert_eq!(f.user_id, "u");
            let got: Features<'_> = (
                f.current_session_length_ms,
                f.session_events,
                f.views,
                f.cart_adds,
                f.last_category.as_deref(),
                f.session_count,
                f.avg_session_duration_ms,
                f.updated_ts,
            );
            assert_eq!(got, expected, "{name}");
        }
        assert!(state.close("u", late_start + GAP - 1, GAP).is_some());
        let f = user_features("u", &state);
        assert_eq!(
            (f.session_events, f.session_count, f.avg_session_duration_ms),
            (0, 2, MIN),
            "no open session: zero current fields, average rounded down"
        );
    }
}
