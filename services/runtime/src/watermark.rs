//! Per-partition event-time watermarks with bounded out-of-orderness and idle handling.
//!
//! Each input partition has its own clock, because its state and timers are its own and must
//! come out the same whichever replica processes it. The watermark is Flink's
//! `BoundedOutOfOrderness`: `max event time seen - max out-of-orderness - 1`, never moving back.
//!
//! An idle partition (no records for the idle timeout) would hold its windows open forever; it is
//! instead carried along by the partitions that are active on the same replica, to the smallest
//! of their watermarks (Flink's `withIdleness`: idle inputs stop holding the minimum back).

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use trendstream_events::time::EventTime;
use trendstream_service::duration::format_ms;

/// The watermark before any record: nothing is late, no timer fires.
pub const MIN_WATERMARK: i64 = i64::MIN;

/// A partition's event-time clock; persisted in the partition's state so that a restart or a
/// move to another replica resumes at the same watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionClock {
    /// Largest event time seen, if any.
    pub max_event_time: Option<i64>,
    /// Current watermark (monotonic).
    pub watermark: i64,
}

impl Default for PartitionClock {
    fn default() -> Self {
        Self {
            max_event_time: None,
            watermark: MIN_WATERMARK,
        }
    }
}

impl PartitionClock {
    /// Records an event time; returns true when the watermark moved forward.
    pub fn observe(&mut self, event_time: i64, max_out_of_orderness: i64) -> bool {
        if self.max_event_time.is_some_and(|max| max >= event_time) {
            return false;
        }
        self.max_event_time = Some(event_time);
        self.advance_to(
            event_time
                .saturating_sub(max_out_of_orderness)
                .saturating_sub(1),
        )
    }

    /// Moves the watermark forward to `watermark` (never back); true when it moved.
    pub fn advance_to(&mut self, watermark: i64) -> bool {
        if watermark > self.watermark {
            self.watermark = watermark;
            true
        } else {
            false
        }
    }

    /// How far event time trails the newest event, for the watermark-delay metric.
    pub fn delay(&self) -> Option<i64> {
        self.max_event_time
            .filter(|_| self.watermark != MIN_WATERMARK)
            .map(|max| max - self.watermark)
    }
}

/// A partition as the idle check sees it.
#[derive(Debug, Clone, Copy)]
pub struct PartitionActivity {
    pub partition: i32,
    pub watermark: i64,
    pub last_record: Instant,
}

/// Which idle partitions move, and to where: every partition without a record for
/// `idle_timeout` whose watermark is below the smallest watermark of the active partitions is
/// advanced to that smallest watermark. Nothing moves when no partition is active.
pub fn idle_advances(
    partitions: &[PartitionActivity],
    now: Instant,
    idle_timeout: Duration,
) -> Vec<(i32, i64)> {
    let is_idle =
        |p: &PartitionActivity| now.saturating_duration_since(p.last_record) >= idle_timeout;
    let Some(active_min) = partitions
        .iter()
        .filter(|p| !is_idle(p) && p.watermark != MIN_WATERMARK)
        .map(|p| p.watermark)
        .min()
    else {
        return Vec::new();
    };
    partitions
        .iter()
        .filter(|p| is_idle(p) && p.watermark < active_min)
        .map(|p| (p.partition, active_min))
        .collect()
}

/// Why a record with `event_time` must not reach its partition's clock: it is further than
/// `max_skew` ahead of the wall clock `now` (all in ms since the epoch). Such a record would move
/// the watermark past every record to come (a producer's clock gone wrong, a year 9999), so the
/// runtime dead-letters it with this reason instead.
pub fn beyond_future_skew(event_time: i64, now: i64, max_skew: i64) -> Option<String> {
    (event_time.saturating_sub(now) > max_skew).then(|| {
        let at = EventTime(event_time).to_rfc3339().unwrap_or_default();
        format!(
            "event time {event_time} ms ({at}) is ahead of the wall clock, more than \
             MAX_FUTURE_SKEW ({}); it would move the partition's watermark past every record \
             to come",
            format_ms(max_skew)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_out_of_orderness() {
        // (event times in arrival order, expected watermark after each), bound 30 s
        let bound = 30_000;
        let cases: [(&[i64], &[i64]); 3] = [
            (&[100_000], &[69_999]),
            (
                &[100_000, 90_000, 130_000, 120_000],
                &[69_999, 69_999, 99_999, 99_999],
            ),
            // an old record never moves the watermark back
            (&[200_000, 1_000], &[169_999, 169_999]),
        ];
        for (events, expected) in cases {
            let mut clock = PartitionClock::default();
            let got: Vec<i64> = events
                .iter()
                .map(|&ts| {
                    clock.observe(ts, bound);
                    clock.watermark
                })
                .collect();
            assert_eq!(got, expected, "events {events:?}");
        }
    }

    #[test]
    fn delay_and_initial_state() {
        let mut clock = PartitionClock::default();
        assert_eq!(clock.delay(), None);
        assert!(clock.observe(50_000, 30_000));
        assert_eq!(clock.delay(), Some(30_001));
        assert!(!clock.observe(40_000, 30_000));
        assert!(!clock.advance_to(0));
    }

    #[test]
    fn idle_partitions_follow_the_active_ones() {
        let now = Instant::now();
        let timeout = Duration::from_secs(10);
        let active = now - Duration::from_secs(1);
        let idle = now - Duration::from_secs(10);
        let p = |partition, watermark, last_record| PartitionActivity {
            partition,
            watermark,
            last_record,
        };
        struct Case {
            name: &'static str,
            partitions: Vec<PartitionActivity>,
            expected: Vec<(i32, i64)>,
        }
        let cases = [
            Case {
                name: "idle partition behind the active minimum moves to it",
                partitions: vec![p(0, 1_000, active), p(1, 5_000, active), p(2, 200, idle)],
                expected: vec![(2, 1_000)],
            },
            Case {
                name: "idle partition ahead stays",
                partitions: vec![p(0, 1_000, active), p(2, 3_000, idle)],
                expected: vec![],
            },
            Case {
                name: "all idle: nothing to follow",
                partitions: vec![p(0, 1_000, idle), p(1, 200, idle)],
                expected: vec![],
            },
            Case {
                name: "a partition that never saw a record moves too",
                partitions: vec![p(0, 1_000, active), p(1, MIN_WATERMARK, idle)],
                expected: vec![(1, 1_000)],
            },
            Case {
                name: "an active partition without a watermark does not count",
                partitions: vec![p(0, MIN_WATERMARK, active), p(1, 200, idle)],
                expected: vec![],
            },
        ];
        for case in cases {
            assert_eq!(
                idle_advances(&case.partitions, now, timeout),
                case.expected,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn records_far_ahead_of_the_wall_clock_are_refused() {
        let now = 1_800_000_000_000;
        let hour = 3_600_000;
        assert_eq!(beyond_future_skew(now, now, hour), None);
        assert_eq!(beyond_future_skew(now + hour, now, hour), None);
        assert_eq!(beyond_future_skew(now - 10 * hour, now, hour), None);
        let year_9999 = 253_402_300_799_000;
        let reason = beyond_future_skew(year_9999, now, hour).expect("refused");
        assert!(reason.contains("MAX_FUTURE_SKEW (1h)"), "{reason}");
        assert!(reason.contains("(9999-12-31T23:59:59.000Z)"), "{reason}");
        assert!(beyond_future_skew(now + hour + 1, now, hour).is_some());
        assert!(beyond_future_skew(i64::MAX, i64::MIN, hour).is_some());
    }
}
