//! What a replica does when a transaction fails (docs/failures.md), as logic over a
//! [`TxnControl`] producer so that it is tested without a broker.
//!
//! A failed transaction is aborted at once (librdkafka needs its delivery reports served while
//! it aborts: the engine's producer polls on a thread of its own) and its input is replayed from
//! the committed offsets:
//! - [`FailureClass::Transient`] (broker, network or Redis trouble, a timeout): after a backoff
//!   that doubles with each failure in a row, with jitter, up to a cap;
//! - [`FailureClass::Record`] (a record the producer or the broker refuses, now known, so the
//!   replay dead-letters it): at once;
//! - [`FailureClass::Fatal`] (the producer cannot go on, e.g. the broker bumped its epoch after
//!   the transaction timed out): with a new producer, which fences the old one. Fatal again
//!   before anything committed means another live instance holds the transactional id: stop.

use std::time::{Duration, Instant};

/// How a failed transaction is recovered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    Transient,
    Record,
    Fatal,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Record => "record",
            Self::Fatal => "fatal",
        }
    }
}

/// A failed call to the producer, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: FailureClass,
    pub message: String,
}

impl Failure {
    pub fn new(class: FailureClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
        }
    }
}

/// Why the replica must stop (it exits; Kubernetes restarts it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Stop(pub String);

/// The transactional calls recovery makes: the engine's producer, a fake in tests.
pub trait TxnControl {
    /// Drops the records still queued (they belong to the failed transaction).
    fn purge_queued(&self);
    /// Aborts the open transaction; retrying after a timeout resumes the same abort.
    fn abort(&self) -> Result<(), Failure>;
    /// Replaces the producer with a new one of the same transactional id, initialised.
    fn recreate(&mut self) -> Result<(), Failure>;
}

/// Exponential backoff with jitter, capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// The wait after `failures` failures in a row (at least 1): `initial` doubled per further
    /// failure, capped at `max`; `jitter` in [0, 1) takes up to half of it off, so replicas that
    /// failed together do not retry in step.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        let full = self.initial.saturating_mul(1 << doublings).min(self.max);
        full - (full / 2).mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// After this many record-level failures in a row, further ones back off like transient ones
/// (what was learned did not help: something else is wrong).
const RECORD_RETRIES_AT_ONCE: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Transactions run.
    Running,
    /// The abort failed; it is tried again at `at`.
    Abort { at: Instant },
    /// A new producer is needed; it is made at `at`.
    Recreate { at: Instant },
    /// Aborted; the replay begins at `at`.
    Backoff { at: Instant },
}

/// What the loop does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Process records.
    Run,
    /// Hold input: an abort, a new producer or the end of a backoff is awaited.
    Hold,
    /// Seek back to the committed offsets and process again.
    Replay,
}

/// The abort-and-retry state machine of one replica's transactions.
#[derive(Debug)]
pub struct Recovery {
    policy: RetryPolicy,
    phase: Phase,
    /// Failures since the last commit.
    failures: u32,
    /// Record-level failures since the last commit.
    record_failures: u32,
    /// The producer was re-created and nothing committed since.
    recreated: bool,
    last: Option<Failure>,
}

impl Recovery {
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            phase: Phase::Running,
            failures: 0,
            record_failures: 0,
            recreated: false,
            last: None,
        }
    }

    /// True while transactions may run.
    pub fn running(&self) -> bool {
        self.phase == Phase::Running
    }

    /// Failures since the last commit.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Why the replica is not ready, from the first failure until the next commit.
    pub fn reason(&self) -> Option<String> {
        let last = self.last.as_ref()?;
        let doing = match self.phase {
            Phase::Running => "replaying",
            Phase::Abort { .. } => "retrying the abort",
            Phase::Recreate { .. } => "re-creating the producer",
            Phase::Backoff { .. } => "backing off before replaying",
        };
        Some(format!(
            "transaction failed ({} in a row, last {}: {}); {doing}",
            self.failures,
            last.class.as_str(),
            last.message
        ))
    }

    /// A transaction committed: failures are forgotten.
    pub fn committed(&mut self) {
        self.failures = 0;
        self.record_failures = 0;
        self.recreated = false;
        self.last = None;
    }

    /// A transaction failed: aborts it or re-creates the producer. `jitter` in [0, 1).
    pub fn failed(
        &mut self,
        producer: &mut impl TxnControl,
        mut failure: Failure,
        now: Instant,
        jitter: f64,
    ) -> Result<(), Stop> {
        self.failures += 1;
        if failure.class == FailureClass::Record {
            self.record_failures += 1;
            if self.record_failures > RECORD_RETRIES_AT_ONCE {
                failure.class = FailureClass::Transient;
            }
        }
        let class = failure.class;
        self.last = Some(failure);
        if class == FailureClass::Fatal {
            return self.recreate(producer, now, jitter);
        }
        producer.purge_queued();
        self.abort(producer, now, jitter)
    }

    /// Moves a pending abort, re-creation or backoff on when its time has come.
    pub fn poll(
        &mut self,
        producer: &mut impl TxnControl,
        now: Instant,
        jitter: f64,
    ) -> Result<Next, Stop> {
        match self.phase {
            Phase::Running => return Ok(Next::Run),
            Phase::Abort { at } | Phase::Recreate { at } | Phase::Backoff { at } if now < at => {
                return Ok(Next::Hold);
            }
            Phase::Abort { .. } => self.abort(producer, now, jitter)?,
            Phase::Recreate { .. } => self.recreate(producer, now, jitter)?,
            Phase::Backoff { .. } => {
                self.phase = Phase::Running;
                return Ok(Next::Replay);
            }
        }
        // An abort or re-creation that succeeded may have nothing left to wait for.
        self.poll(producer, now, jitter)
    }

    fn abort(
        &mut self,
        producer: &mut impl TxnControl,
        now: Instant,
        jitter: f64,
    ) -> Result<(), Stop> {
        match producer.abort() {
            Ok(()) => {
                self.phase = Phase::Backoff {
                    at: now + self.wait(jitter),
                };
                Ok(())
            }
            Err(failure) if failure.class == FailureClass::Fatal => {
                self.last = Some(failure);
                self.recreate(producer, now, jitter)
            }
            Err(failure) => {
                self.last = Some(failure);
                self.phase = Phase::Abort {
                    at: now + self.policy.delay(self.failures, jitter),
                };
                Ok(())
            }
        }
    }

    fn recreate(
        &mut self,
        producer: &mut impl TxnControl,
        now: Instant,
        jitter: f64,
    ) -> Result<(), Stop> {
        if self.recreated {
            let last = self.last.as_ref().map_or("", |f| f.message.as_str());
            return Err(Stop(format!(
                "the producer failed fatally again before it committed anything ({last}); \
                 another live replica probably uses the same transactional id"
            )));
        }
        match producer.recreate() {
            Ok(()) => {
                self.recreated = true;
                self.phase = Phase::Backoff {
                    at: now + self.wait(jitter),
                };
                Ok(())
            }
            Err(failure) if failure.class == FailureClass::Fatal => Err(Stop(format!(
                "a new producer could not take over the transactional id: {}",
                failure.message
            ))),
            Err(failure) => {
                self.last = Some(failure);
                self.phase = Phase::Recreate {
                    at: now + self.policy.delay(self.failures, jitter),
                };
                Ok(())
            }
        }
    }

    /// The backoff before replaying: none when a record-level failure taught what to do.
    fn wait(&self, jitter: f64) -> Duration {
        match &self.last {
            Some(last) if last.class == FailureClass::Record => Duration::ZERO,
            _ => self.policy.delay(self.failures, jitter),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::VecDeque;

    /// Records the calls; answers each with the next scripted result (default: success).
    #[derive(Default)]
    struct FakeProducer {
        calls: RefCell<Vec<&'static str>>,
        aborts: RefCell<VecDeque<Result<(), Failure>>>,
        recreations: VecDeque<Result<(), Failure>>,
    }

    impl TxnControl for FakeProducer {
        fn purge_queued(&self) {
            self.calls.borrow_mut().push("purge");
        }

        fn abort(&self) -> Result<(), Failure> {
            self.calls.borrow_mut().push("abort");
            self.aborts.borrow_mut().pop_front().unwrap_or(Ok(()))
        }

        fn recreate(&mut self) -> Result<(), Failure> {
            self.calls.borrow_mut().push("recreate");
            self.recreations.pop_front().unwrap_or(Ok(()))
        }
    }

    fn taken(producer: &FakeProducer) -> Vec<&'static str> {
        std::mem::take(&mut *producer.calls.borrow_mut())
    }

    const POLICY: RetryPolicy = RetryPolicy {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(5),
    };
    const MS: Duration = Duration::from_millis(1);

    fn transient(message: &str) -> Failure {
        Failure::new(FailureClass::Transient, message)
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let delays: Vec<u128> = (1..=8).map(|n| POLICY.delay(n, 0.0).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(POLICY.delay(3, 0.5), Duration::from_millis(300));
        assert_eq!(POLICY.delay(3, 0.999).as_millis(), 200);
        assert_eq!(POLICY.delay(u32::MAX, 1.0), Duration::from_millis(2500));
        assert_eq!(POLICY.delay(0, 0.0), Duration::from_millis(100));
    }

    #[test]
    fn a_transient_failure_purges_aborts_backs_off_and_replays() {
        let mut producer = FakeProducer::default();
        let mut recovery = Recovery::new(POLICY);
        let t0 = Instant::now();
        recovery
            .failed(&mut producer, transient("redis: timed out"), t0, 0.0)
            .expect("recovers");
        assert_eq!(
            taken(&producer),
            ["purge", "abort"],
            "purged before the abort"
        );
        assert!(!recovery.running());
        let reason = recovery.reason().expect("not ready");
        assert!(
            reason.contains("redis: timed out") && reason.contains("backing off"),
            "{reason}"
        );
        assert_eq!(
            recovery.poll(&mut producer, t0 + 99 * MS, 0.0),
            Ok(Next::Hold)
        );
        assert_eq!(
            recovery.poll(&mut producer, t0 + 100 * MS, 0.0),
            Ok(Next::Replay)
        );
        assert_eq!(
            recovery.poll(&mut producer, t0 + 101 * MS, 0.0),
            Ok(Next::Run)
        );
        assert!(taken(&producer).is_empty(), "the abort is not repeated");
        assert!(recovery.reason().is_some_and(|r| r.contains("replaying")));
        recovery.committed();
        assert_eq!(recovery.reason(), None);
    }

    #[test]
    fn failures_in_a_row_back_off_longer_until_a_commit() {
        let mut producer = FakeProducer::default();
        let mut recovery = Recovery::new(POLICY);
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..3 {
            recovery
                .failed(&mut producer, transient("x"), now, 0.0)
                .expect("recovers");
            let start = now;
            while recovery.poll(&mut producer, now, 0.0) != Ok(Next::Replay) {
                now += MS;
            }
            waits.push((now - start).as_millis());
        }
        assert_eq!(waits, [100, 200, 400]);
        assert_eq!(recovery.failures(), 3);
        recovery.committed();
        recovery
            .failed(&mut producer, transient("x"), now, 0.0)
            .expect("recovers");
        assert_eq!(
            recovery.poll(&mut producer, now + 100 * MS, 0.0),
            Ok(Next::Replay)
        );
    }

    #[test]
    fn a_record_failure_replays_at_once_until_it_repeats_too_often() {
        let mut producer = FakeProducer::default();
        let mut recovery = Recovery::new(POLICY);
        let now = Instant::now();
        for _ in 0..RECORD_RETRIES_AT_ONCE {
            let refused = Failure::new(FailureClass::Record, "message size too large");
            recovery
                .failed(&mut producer, refused, now, 0.0)
                .expect("recovers");
            assert_eq!(taken(&producer), ["purge", "abort"]);
            assert_eq!(recovery.poll(&mut producer, now, 0.0), Ok(Next::Replay));
        }
        let refused = Failure::new(FailureClass::Record, "message size too large");
        recovery
            .failed(&mut producer, refused, now, 0.0)
            .expect("recovers");
        assert_eq!(recovery.poll(&mut producer, now, 0.0), Ok(Next::Hold));
        assert!(
            recovery
                .reason()
                .is_some_and(|r| r.contains("last transient"))
        );
    }

    #[test]
    fn an_abort_that_times_out_is_retried_after_a_backoff() {
        let mut producer = FakeProducer::default();
        producer
            .aborts
            .borrow_mut()
            .push_back(Err(transient("abort: timed out")));
        let mut recovery = Recovery::new(POLICY);
        let t0 = Instant::now();
        recovery
            .failed(&mut producer, transient("commit: timed out"), t0, 0.0)
            .expect("recovers");
        assert_eq!(taken(&producer), ["purge", "abort"]);
        assert!(
            recovery
                .reason()
                .is_some_and(|r| r.contains("retrying the abort"))
        );
        assert_eq!(
            recovery.poll(&mut producer, t0 + 50 * MS, 0.0),
            Ok(Next::Hold)
        );
        // The second abort succeeds; the backoff counts from it.
        let t1 = t0 + 100 * MS;
        assert_eq!(recovery.poll(&mut producer, t1, 0.0), Ok(Next::Hold));
        assert_eq!(taken(&producer), ["abort"]);
        assert_eq!(
            recovery.poll(&mut producer, t1 + 100 * MS, 0.0),
            Ok(Next::Replay)
        );
    }

    #[test]
    fn a_fatal_error_recreates_the_producer_once() {
        let mut producer = FakeProducer::default();
        let mut recovery = Recovery::new(POLICY);
        let now = Instant::now();
        let fenced = || Failure::new(FailureClass::Fatal, "send offsets: fenced");
        recovery
            .failed(&mut producer, fenced(), now, 0.0)
            .expect("recovers");
        assert_eq!(
            taken(&producer),
            ["recreate"],
            "no abort on a dead producer"
        );
        assert_eq!(
            recovery.poll(&mut producer, now + 100 * MS, 0.0),
            Ok(Next::Replay)
        );
        // Fatal again before anything committed: someone else holds the transactional id.
        let stop = recovery
            .failed(&mut producer, fenced(), now, 0.0)
            .expect_err("stops");
        assert!(stop.0.contains("fenced"), "{stop}");
        // After a commit, a new fatal error is recovered from again.
        let mut recovery = Recovery::new(POLICY);
        recovery
            .failed(&mut producer, fenced(), now, 0.0)
            .expect("recovers");
        recovery.committed();
        recovery
            .failed(&mut producer, fenced(), now, 0.0)
            .expect("recovers");
    }

    #[test]
    fn an_abort_failing_fatally_recreates_and_a_fenced_recreation_stops() {
        let mut producer = FakeProducer::default();
        producer
            .aborts
            .borrow_mut()
            .push_back(Err(Failure::new(FailureClass::Fatal, "abort: fatal")));
        producer.recreations.push_back(Err(transient(
            "init transactions: coordinator not available",
        )));
        producer.recreations.push_back(Err(Failure::new(
            FailureClass::Fatal,
            "init transactions: fenced",
        )));
        let mut recovery = Recovery::new(POLICY);
        let t0 = Instant::now();
        recovery
            .failed(&mut producer, transient("produce"), t0, 0.0)
            .expect("the re-creation is retried");
        assert_eq!(taken(&producer), ["purge", "abort", "recreate"]);
        assert!(recovery.reason().is_some_and(|r| r.contains("re-creating")));
        let stop = recovery
            .poll(&mut producer, t0 + 100 * MS, 0.0)
            .expect_err("a fenced new producer stops the replica");
        assert!(stop.0.contains("init transactions: fenced"), "{stop}");
    }
}
