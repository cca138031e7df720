//! Pacing at a target rate: record `i` (counted from the last rebase) is due `i / rate` seconds
//! after it, so short sleeps that overshoot are made up by the next records instead of lowering
//! the rate. A writer that falls more than [`MAX_LAG`] behind (a broker stall) forgets the debt
//! rather than bursting to catch up.

use std::time::Duration;

/// How far behind schedule the limiter lets a writer fall before it rebases.
pub const MAX_LAG: Duration = Duration::from_secs(1);

/// Sleeps shorter than this are skipped (the schedule is absolute, so nothing is lost).
pub const MIN_SLEEP: Duration = Duration::from_millis(1);

/// A pacing schedule. Pure: the caller passes the time elapsed since it started.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    /// Records per second; 0 means unlimited.
    rate: u64,
    base_time: Duration,
    base_count: u64,
    sent: u64,
}

impl RateLimiter {
    pub fn new(rate: u64) -> Self {
        Self {
            rate,
            base_time: Duration::ZERO,
            base_count: 0,
            sent: 0,
        }
    }

    /// When the record with index `n` (since the rebase) is due.
    fn due(&self, n: u64) -> Duration {
        let nanos = u128::from(n) * 1_000_000_000 / u128::from(self.rate.max(1));
        self.base_time + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Accounts for one more record at elapsed time `now` and returns how long to wait before
    /// sending it.
    pub fn delay(&mut self, now: Duration) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let due = self.due(self.sent - self.base_count);
        self.sent += 1;
        if due > now {
            return due - now;
        }
        if now - due > MAX_LAG {
            // This record goes now; the schedule restarts from it.
            self.base_time = now;
            self.base_count = self.sent - 1;
        }
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn unlimited_never_waits() {
        let mut r = RateLimiter::new(0);
        assert!((0..1000).all(|_| r.delay(Duration::ZERO).is_zero()));
    }

    #[test]
    fn records_are_spaced_one_over_the_rate_apart() {
        let mut r = RateLimiter::new(1000);
        // All asked at t=0: record i waits i ms.
        for i in 0..5u32 {
            assert_eq!(r.delay(Duration::ZERO), MS * i);
        }
        // At 2.5 ms the 6th record (due 5 ms) waits 2.5 ms.
        assert_eq!(
            r.delay(Duration::from_micros(2500)),
            Duration::from_micros(2500)
        );
    }

    #[test]
    fn overslept_time_is_made_up_and_the_average_rate_holds() {
        let mut r = RateLimiter::new(250); // 4 ms apart
        let mut now = Duration::ZERO;
        for _ in 0..1000 {
            let wait = r.delay(now);
            // Sleeps overshoot by 1.5 ms; waits below 1 ms are skipped.
            if wait >= MIN_SLEEP {
                now += wait + Duration::from_micros(1500);
            }
        }
        // 1000 records at 250/s take 4 s (the last is due at 3.996 s), plus at most one overshoot.
        assert!(
            now >= Duration::from_millis(3990) && now <= Duration::from_millis(4010),
            "{now:?}"
        );
    }

    #[test]
    fn a_long_stall_rebases_instead_of_bursting() {
        let mut r = RateLimiter::new(100); // 10 ms apart
        assert_eq!(r.delay(Duration::ZERO), Duration::ZERO);
        // Stalled for 5 s: this record goes at once, the next is 10 ms after it.
        let stalled = Duration::from_secs(5);
        assert_eq!(r.delay(stalled), Duration::ZERO);
        assert_eq!(r.delay(stalled), MS * 10);
        // Behind by less than MAX_LAG: no rebase, the records catch up.
        let mut r = RateLimiter::new(100);
        r.delay(Duration::ZERO);
        let late = Duration::from_millis(500);
        assert_eq!(r.delay(late), Duration::ZERO); // due 10 ms
        assert_eq!(r.delay(late), Duration::ZERO); // due 20 ms
    }

    #[test]
    fn huge_rates_do_not_overflow() {
        let mut r = RateLimiter::new(u64::MAX);
        assert!(r.delay(Duration::ZERO) <= MS);
    }
}
