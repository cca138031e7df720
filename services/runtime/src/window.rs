//! Event-time windows: assignment (tumbling, sliding), session merging and lateness.
//!
//! Pure functions over millisecond timestamps; the processors keep window contents in state and
//! register an event-time timer at [`Window::max_timestamp`] to fire and at
//! [`Window::cleanup_time`] to forget. The semantics are Flink's: a window `[start, end)` fires
//! when the watermark reaches `end - 1`; until the watermark passes `end - 1 + allowed_lateness`
//! a late record still updates it (and it fires again); after that the record is late and goes
//! to the late output.

use serde::{Deserialize, Serialize};

/// A half-open event-time interval `[start, end)` in milliseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    pub fn new(start: i64, end: i64) -> Self {
        Self { start, end }
    }

    /// The last timestamp inside the window; the window fires when the watermark reaches it.
    pub fn max_timestamp(&self) -> i64 {
        self.end - 1
    }

    /// When the window's state may be dropped: after this, records for it are late.
    pub fn cleanup_time(&self, allowed_lateness: i64) -> i64 {
        self.max_timestamp().saturating_add(allowed_lateness)
    }

    pub fn contains(&self, ts: i64) -> bool {
        self.start <= ts && ts < self.end
    }

    /// Overlapping or touching windows merge (sessions).
    pub fn intersects(&self, other: &Window) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    pub fn cover(&self, other: &Window) -> Window {
        Window::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// Fixed-size, non-overlapping windows aligned to the epoch (plus an optional offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TumblingWindows {
    pub size: i64,
    pub offset: i64,
}

impl TumblingWindows {
    /// `size` must be positive (configuration validates it).
    pub fn new(size: i64) -> Self {
        Self { size, offset: 0 }
    }

    pub fn assign(&self, ts: i64) -> Window {
        let start = window_start(ts, self.offset, self.size);
        Window::new(start, start + self.size)
    }
}

/// Fixed-size windows that start every `slide`; a record belongs to `size / slide` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindows {
    pub size: i64,
    pub slide: i64,
}

impl SlidingWindows {
    /// The windows containing `ts`, oldest first.
    pub fn assign(&self, ts: i64) -> Vec<Window> {
        let last_start = window_start(ts, 0, self.slide);
        let mut windows = Vec::new();
        let mut start = last_start;
        while start > ts - self.size {
            windows.push(Window::new(start, start + self.size));
            start -= self.slide;
        }
        windows.reverse();
        windows
    }
}

/// Flink's `TimeWindow.getWindowStartWithOffset`, correct for negative timestamps too.
fn window_start(ts: i64, offset: i64, size: i64) -> i64 {
    ts - (ts - offset).rem_euclid(size)
}

/// Session windows: a record opens `[ts, ts + gap)`; windows that overlap or touch merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindows {
    pub gap: i64,
}

/// What inserting a record into a key's sessions did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionMerge {
    /// The session the record now belongs to.
    pub session: Window,
    /// Existing sessions folded into it (their state must be merged into `session`'s and their
    /// timers deleted). Empty when the record only extended or opened a session.
    pub merged: Vec<Window>,
    /// The existing session that `session` replaces, if the record landed in or extended one.
    pub replaced: Option<Window>,
}

impl SessionWindows {
    /// Merges the record at `ts` into `existing` (a key's open sessions, disjoint).
    pub fn insert(&self, existing: &[Window], ts: i64) -> SessionMerge {
        let mut session = Window::new(ts, ts.saturating_add(self.gap));
        let mut touched: Vec<Window> = existing
            .iter()
            .copied()
            .filter(|w| w.intersects(&session))
            .collect();
        touched.sort();
        for w in &touched {
            session = session.cover(w);
        }
        let replaced = touched.first().copied();
        let merged = touched.into_iter().skip(1).collect();
        SessionMerge {
            session,
            merged,
            replaced,
        }
    }
}

/// Where a record for `window` stands against the watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lateness {
    /// The window has not fired yet.
    OnTime,
    /// The window has fired but is kept for allowed lateness: update it and fire again.
    LateUpdate,
    /// The window is gone: send the record to the late output.
    Late,
}

/// Classifies a record belonging to `window` given the partition's watermark.
pub fn lateness(window: &Window, watermark: i64, allowed_lateness: i64) -> Lateness {
    if watermark < window.max_timestamp() {
        Lateness::OnTime
    } else if watermark < window.cleanup_time(allowed_lateness) {
        Lateness::LateUpdate
    } else {
        Lateness::Late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_assignment() {
        let cases = [
            // (size, ts, start)
            (60_000, 0, 0),
            (60_000, 59_999, 0),
            (60_000, 60_000, 60_000),
            (60_000, 125_000, 120_000),
            (60_000, -1, -60_000),
            (1_000, 1_700_000_000_123, 1_700_000_000_000),
        ];
        for (size, ts, start) in cases {
            let w = TumblingWindows::new(size).assign(ts);
            assert_eq!(w, Window::new(start, start + size), "size {size} ts {ts}");
            assert!(w.contains(ts));
        }
        let offset = TumblingWindows {
            size: 60_000,
            offset: 15_000,
        };
        assert_eq!(offset.assign(14_999), Window::new(-45_000, 15_000));
        assert_eq!(offset.assign(15_000), Window::new(15_000, 75_000));
    }

    #[test]
    fn sliding_assignment() {
        let sliding = SlidingWindows {
            size: 10_000,
            slide: 5_000,
        };
        let cases: [(i64, &[(i64, i64)]); 4] = [
            (0, &[(-5_000, 5_000), (0, 10_000)]),
            (4_999, &[(-5_000, 5_000), (0, 10_000)]),
            (5_000, &[(0, 10_000), (5_000, 15_000)]),
            (12_345, &[(5_000, 15_000), (10_000, 20_000)]),
        ];
        for (ts, expected) in cases {
            let got: Vec<(i64, i64)> = sliding
                .assign(ts)
                .into_iter()
                .map(|w| (w.start, w.end))
                .collect();
            assert_eq!(got, expected, "ts {ts}");
        }
        let uneven = SlidingWindows {
            size: 10_000,
            slide: 3_000,
        };
        for w in uneven.assign(20_500) {
            assert!(w.contains(20_500), "{w:?}");
        }
        assert_eq!(uneven.assign(20_500).len(), 3);
    }

    #[test]
    fn session_merging() {
        let gap = 30 * 60_000;
        let sessions = SessionWindows { gap };
        let min = 60_000;
        struct Case {
            name: &'static str,
            existing: Vec<Window>,
            ts: i64,
            session: Window,
            merged: Vec<Window>,
            replaced: Option<Window>,
        }
        let cases = [
            Case {
                name: "first record opens a session",
                existing: vec![],
                ts: 0,
                session: Window::new(0, gap),
                merged: vec![],
                replaced: None,
            },
            Case {
                name: "record inside extends",
                existing: vec![Window::new(0, gap)],
                ts: 10 * min,
                session: Window::new(0, 10 * min + gap),
                merged: vec![],
                replaced: Some(Window::new(0, gap)),
            },
            Case {
                name: "gap exactly 30 min still joins (windows touch)",
                existing: vec![Window::new(0, gap)],
                ts: gap,
                session: Window::new(0, 2 * gap),
                merged: vec![],
                replaced: Some(Window::new(0, gap)),
            },
            Case {
                name: "gap of 30 min and 1 ms opens a new session",
                existing: vec![Window::new(0, gap)],
                ts: gap + 1,
                session: Window::new(gap + 1, 2 * gap + 1),
                merged: vec![],
                replaced: None,
            },
            Case {
                name: "late record before a session extends it backwards",
                existing: vec![Window::new(40 * min, 40 * min + gap)],
                ts: 20 * min,
                session: Window::new(20 * min, 40 * min + gap),
                merged: vec![],
                replaced: Some(Window::new(40 * min, 40 * min + gap)),
            },
            Case {
                name: "late record between two sessions merges them",
                existing: vec![Window::new(0, gap), Window::new(50 * min, 50 * min + gap)],
                ts: 25 * min,
                session: Window::new(0, 50 * min + gap),
                merged: vec![Window::new(50 * min, 50 * min + gap)],
                replaced: Some(Window::new(0, gap)),
            },
        ];
        for case in cases {
            let got = sessions.insert(&case.existing, case.ts);
            assert_eq!(got.session, case.session, "{}", case.name);
            assert_eq!(got.merged, case.merged, "{}", case.name);
            assert_eq!(got.replaced, case.replaced, "{}", case.name);
        }
    }

    #[test]
    fn lateness_against_watermark() {
        let w = Window::new(0, 60_000);
        let cases = [
            // (watermark, allowed lateness, expected)
            (59_998, 0, Lateness::OnTime),
            (59_999, 0, Lateness::Late),
            (59_999, 10_000, Lateness::LateUpdate),
            (69_998, 10_000, Lateness::LateUpdate),
            (69_999, 10_000, Lateness::Late),
            (i64::MIN, 0, Lateness::OnTime),
        ];
        for (watermark, allowed, expected) in cases {
            assert_eq!(
                lateness(&w, watermark, allowed),
                expected,
                "watermark {watermark} lateness {allowed}"
            );
        }
    }
}
