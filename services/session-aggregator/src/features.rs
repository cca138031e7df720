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

    #[test]
    fn features_follow_the_state() {
        let sessions = SessionWindows { gap: GAP };
        let mut state = UserState::default();
        let apply = |state: &mut UserState, ts, kind, category| {
            state.apply_click(&click("u", ts, kind, category, None), sessions, i64::MIN);
        };
        struct Expect {
            name: &'static str,
            length: i64,
            events: u64,
            views: u64,
            cart_adds: u64,
            last_category: Option<&'static str>,
            count: u64,
            avg: i64,
            updated: i64,
        }
        let check = |state: &UserState, e: Expect| {
            let f = user_features("u", state);
            assert_eq!(f.user_id, "u");
            assert_eq!(
                (
                    f.current_session_length_ms,
                    f.session_events,
                    f.views,
                    f.cart_adds
                ),
                (e.length, e.events, e.views, e.cart_adds),
                "{}",
                e.name
            );
            assert_eq!(f.last_category.as_deref(), e.last_category, "{}", e.name);
            assert_eq!(
                (f.session_count, f.avg_session_duration_ms, f.updated_ts),
                (e.count, e.avg, e.updated),
                "{}",
                e.name
            );
        };
        apply(&mut state, 0, "page_view", None);
        apply(&mut state, MIN, "product_view", Some("books"));
        apply(&mut state, 2 * MIN, "add_to_cart", Some("books"));
        check(
            &state,
            Expect {
                name: "one open session",
                length: 2 * MIN,
                events: 3,
                views: 2,
                cart_adds: 1,
                last_category: Some("books"),
                count: 0,
                avg: 0,
                updated: 2 * MIN,
            },
        );
        apply(&mut state, 2 * MIN + GAP + 1, "search", Some("toys"));
        check(
            &state,
            Expect {
                name: "the latest-starting open session is current",
                length: 0,
                events: 1,
                views: 0,
                cart_adds: 0,
                last_category: Some("toys"),
                count: 0,
                avg: 0,
                updated: 2 * MIN + GAP + 1,
            },
        );
        apply(&mut state, 90_000, "add_to_cart", Some("shoes"));
        check(
            &state,
            Expect {
                name: "a click into the older open session changes neither current nor last category",
                length: 0,
                events: 1,
                views: 0,
                cart_adds: 0,
                last_category: Some("toys"),
                count: 0,
                avg: 0,
                updated: 2 * MIN + GAP + 1,
            },
        );
        assert!(state.close("u", 2 * MIN + GAP - 1, GAP).is_some());
        check(
            &state,
            Expect {
                name: "after the first close",
                length: 0,
                events: 1,
                views: 0,
                cart_adds: 0,
                last_category: Some("toys"),
                count: 1,
                avg: 2 * MIN,
                updated: 2 * MIN + GAP + 1,
            },
        );
        assert!(state.close("u", 2 * MIN + 2 * GAP, GAP).is_some());
        check(
            &state,
            Expect {
                name: "no open session: zero current fields, average rounded down",
                length: 0,
                events: 0,
                views: 0,
                cart_adds: 0,
                last_category: Some("toys"),
                count: 2,
                avg: MIN,
                updated: 2 * MIN + GAP + 1,
            },
        );
    }
}
