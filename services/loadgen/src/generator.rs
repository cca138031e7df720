//! The record stream of a run, a pure function of [`GenConfig`]: the behaviour model's events
//! (in event-time order), with poison pills inserted, some events held back to come out of order
//! or late, ids given in produce order, partitions computed with Kafka's default partitioner, and
//! after `count` records (or [`Generator::stop`]) the watermark records that close every
//! partition.
//!
//! Out-of-order and late are defined against the partition the record goes to, as the runtime's
//! per-partition watermark sees it (`watermark = max event time - bound - 1`):
//! - an out-of-order event is held back until just before an event more than its delay (at most
//!   `out_of_order_max`, below the bound) newer is released, so it trails its partition's newest
//!   event by at most that delay and is never late;
//! - a late event is held back until its partition's newest event is more than `bound + 1 s`
//!   past it, so it is behind the watermark whatever the rounding.
//!
//! Each record is classified when it is released, against the partition's actual state, and that
//! is what the counts say.

use std::collections::VecDeque;

use trendstream_events::{
    ClickEvent, ClickEventType, Currency, Money, OrderEvent, OrderStatus, encode_click,
    encode_order,
};

use crate::poison;
use crate::record::{Partitions, PoisonKind, Record, RecordKind, Topic};
use crate::rng::Rng;
use crate::sim::{Body, FraudPattern, SimConfig, SimEvent, Simulation};
use crate::summary::Counts;
use trendstream_events::partitioning::partition_for;

/// One day: how far past the last event the watermark records are.
pub const WATERMARK_OFFSET_MS: i64 = 86_400_000;

/// Everything that determines the record stream.
#[derive(Debug, Clone, Copy)]
pub struct GenConfig {
    pub seed: u64,
    pub users: u32,
    /// Records to produce, poison pills included, watermark records not; 0 = no limit (until
    /// [`Generator::stop`]).
    pub count: u64,
    /// Event time of the start of the simulation, epoch ms.
    pub start_ts: i64,
    pub partitions: Partitions,
    /// Probability that a session start plants a fraud pattern.
    pub fraud_rate: f64,
    /// Probability that an event is delayed to come out of order.
    pub out_of_order_rate: f64,
    /// Largest delay of an out-of-order event, ms (below `max_out_of_orderness`).
    pub out_of_order_max_ms: i64,
    /// Probability that an event is held back until it is late.
    pub late_rate: f64,
    /// The processors' bounded out-of-orderness, ms (default 30 s).
    pub max_out_of_orderness_ms: i64,
    /// Probability of a poison pill before an event.
    pub poison_rate: f64,
}

/// A record waiting to be released.
#[derive(Debug)]
struct Pending {
    topic: Topic,
    partition: i32,
    key: String,
    value: String,
    /// Event time of a valid event.
    ts: Option<i64>,
    poison: Option<PoisonKind>,
    status: Option<OrderStatus>,
    completes: Option<FraudPattern>,
    /// Part of a planted fraud pattern: never made late.
    planted: bool,
    watermark: bool,
}

#[derive(Debug)]
struct Held {
    /// Out of order: released before any event newer than this. Late: released once the
    /// partition's newest event reaches this.
    release_at: i64,
    pending: Pending,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Events,
    Drain,
    Watermarks,
    Done,
}

/// The record stream; an iterator of [`Record`]s. [`Generator::counts`] describes what has
/// been produced so far.
#[derive(Debug)]
pub struct Generator {
    config: GenConfig,
    sim: Simulation,
    rng: Rng,
    ready: VecDeque<Pending>,
    delayed: Vec<Held>,
    late: Vec<Held>,
    /// Newest event time per topic partition.
    newest: [Vec<Option<i64>>; 2],
    next_id: u64,
    poison_seq: u64,
    phase: Phase,
    counts: Counts,
}

impl Generator {
    pub fn new(config: GenConfig) -> Self {
        let sim = Simulation::new(SimConfig {
            seed: config.seed,
            users: config.users,
            start_ts: config.start_ts,
            fraud_rate: config.fraud_rate,
        });
        let newest = |topic| vec![None; config.partitions.of(topic).max(1) as usize];
        Self {
            config,
            sim,
            rng: Rng::new(config.seed, 4),
            ready: VecDeque::new(),
            delayed: Vec::new(),
            late: Vec::new(),
            newest: [newest(Topic::Clicks), newest(Topic::Orders)],
            next_id: 0,
            poison_seq: 0,
            phase: Phase::Events,
            counts: Counts::default(),
        }
    }

    /// What has been produced so far (complete once the iterator is exhausted).
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Ends the run early: what is held back is released, then the watermark records follow.
    pub fn stop(&mut self) {
        if self.phase == Phase::Events {
            self.phase = Phase::Drain;
        }
    }

    /// True when `extra` more records fit under the count.
    fn room_for(&self, extra: u64) -> bool {
        self.config.count == 0 || self.counts.events + self.in_flight() + extra <= self.config.count
    }

    fn in_flight(&self) -> u64 {
        (self.ready.len() + self.delayed.len() + self.late.len()) as u64
    }

    fn partition_of(&self, topic: Topic, key: &str) -> i32 {
        partition_for(key.as_bytes(), self.config.partitions.of(topic))
    }

    /// Takes one event of the model into the pipeline.
    fn admit(&mut self, event: SimEvent) {
        let ts = event.ts;
        // Held events about to be overtaken by more than their delay go first.
        if !self.delayed.is_empty() {
            let mut due: Vec<Held> = Vec::new();
            let mut i = 0;
            while i < self.delayed.len() {
                if self.delayed[i].release_at < ts {
                    due.push(self.delayed.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            due.sort_by_key(|h| (h.release_at, h.pending.ts));
            self.ready.extend(due.into_iter().map(|h| h.pending));
        }
        if self.room_for(2) && self.rng.chance(self.config.poison_rate) {
            let topic = if self.rng.chance(0.5) {
                Topic::Clicks
            } else {
                Topic::Orders
            };
            let kind = *self.rng.pick(&PoisonKind::ALL);
            self.poison_seq += 1;
            let value = poison::payload(kind, topic, &event.user, self.poison_seq, ts);
            self.ready.push_back(Pending {
                topic,
                partition: self.partition_of(topic, &event.user),
                key: event.user.clone(),
                value,
                ts: None,
                poison: Some(kind),
                status: None,
                completes: None,
                planted: false,
                watermark: false,
            });
        }
        let pending = self.pending(event);
        if !pending.planted && self.rng.chance(self.config.late_rate) {
            let margin = self.rng.between(1_000, 60_000);
            self.late.push(Held {
                release_at: ts + self.config.max_out_of_orderness_ms + 1 + margin,
                pending,
            });
        } else if self.rng.chance(self.config.out_of_order_rate) {
            let delay = self.rng.between(1, self.config.out_of_order_max_ms.max(1));
            self.delayed.push(Held {
                release_at: ts + delay,
                pending,
            });
        } else {
            self.ready.push_back(pending);
        }
    }

    fn pending(&mut self, event: SimEvent) -> Pending {
        self.next_id += 1;
        let event_id = format!("ev-{}-{}", self.config.seed, self.next_id);
        let (topic, value, status) = match event.body {
            Body::Click(mut click) => {
                click.event_id = event_id;
                (Topic::Clicks, encode_click(&click), None)
            }
            Body::Order(mut order) => {
                order.event_id = event_id;
                let status = order.status;
                (Topic::Orders, encode_order(&order), Some(status))
            }
        };
        Pending {
            topic,
            partition: self.partition_of(topic, &event.user),
            key: event.user,
            // The contract types always serialize; an empty value would be a poison pill.
            value: value
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default(),
            ts: Some(event.ts),
            poison: None,
            status,
            completes: event.completes,
            planted: event.planted,
            watermark: false,
        }
    }

    /// Classifies and counts a released record.
    fn release(&mut self, pending: Pending) -> Record {
        let kind = if pending.watermark {
            RecordKind::Watermark
        } else if let Some(kind) = pending.poison {
            RecordKind::Poison(kind)
        } else {
            let ts = pending.ts.unwrap_or_default();
            let slot = &mut self.newest[pending.topic.index()][pending.partition as usize];
            let kind = match *slot {
                // At or behind the watermark `newest - bound - 1`.
                Some(newest) if ts < newest - self.config.max_out_of_orderness_ms => {
                    RecordKind::Late
                }
                Some(newest) if ts < newest => RecordKind::OutOfOrder,
                _ => RecordKind::InOrder,
            };
            *slot = Some(slot.map_or(ts, |n| n.max(ts)));
            kind
        };
        self.counts.record(pending.topic, kind);
        if let (false, Some(ts)) = (pending.watermark, pending.ts) {
            self.counts.event_time(ts);
            match pending.status {
                Some(OrderStatus::Placed) => self.counts.orders_placed += 1,
                Some(OrderStatus::Cancelled) => self.counts.orders_cancelled += 1,
                Some(OrderStatus::Refunded) => self.counts.orders_refunded += 1,
                _ => {}
            }
            if let Some(pattern) = pending.completes {
                self.counts.fraud(pattern);
            }
            self.release_late(pending.topic, pending.partition);
        }
        Record {
            topic: pending.topic,
            partition: pending.partition,
            key: pending.key,
            value: pending.value,
            ts: pending.ts,
            kind,
        }
    }

    /// Late events of this partition whose time has come.
    fn release_late(&mut self, topic: Topic, partition: i32) {
        let Some(newest) = self.newest[topic.index()][partition as usize] else {
            return;
        };
        let mut i = 0;
        while i < self.late.len() {
            let held = &self.late[i];
            if held.pending.topic == topic
                && held.pending.partition == partition
                && held.release_at <= newest
            {
                let held = self.late.remove(i);
                self.ready.push_back(held.pending);
            } else {
                i += 1;
            }
        }
    }

    /// Whatever is still held when the count is reached, in event-time order.
    fn drain(&mut self) {
        let mut held: Vec<Held> = self.delayed.drain(..).chain(self.late.drain(..)).collect();
        held.sort_by_key(|h| h.pending.ts);
        self.ready.extend(held.into_iter().map(|h| h.pending));
    }

    fn watermarks(&mut self) {
        let ts = self.counts.max_ts.unwrap_or(self.config.start_ts) + WATERMARK_OFFSET_MS;
        self.counts.watermark_ts = Some(ts);
        for topic in Topic::ALL {
            let partitions = self.config.partitions.of(topic);
            for partition in 0..partitions {
                let key = watermark_key(partition, partitions);
                let event_id =
                    format!("wm-{}-{}-{partition}", self.config.seed, topic_label(topic));
                let value = match topic {
                    Topic::Clicks => encode_click(&ClickEvent {
                        event_id,
                        user_id: key.clone(),
                        session_id: None,
                        event_type: ClickEventType::PageView,
                        product_id: None,
                        category: None,
                        price: None,
                        device: None,
                        ts,
                    }),
                    Topic::Orders => encode_order(&OrderEvent {
                        event_id,
                        order_id: format!("o-{}-wm-{partition}", self.config.seed),
                        user_id: key.clone(),
                        status: OrderStatus::Placed,
                        amount: Money::ZERO,
                        currency: Currency::TRY,
                        items: Vec::new(),
                        ts,
                    }),
                };
                self.ready.push_back(Pending {
                    topic,
                    partition,
                    key,
                    value: value
                        .map(|v| String::from_utf8_lossy(&v).into_owned())
                        .unwrap_or_default(),
                    ts: Some(ts),
                    poison: None,
                    status: None,
                    completes: None,
                    planted: false,
                    watermark: true,
                });
            }
        }
    }
}

impl Iterator for Generator {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        loop {
            if let Some(pending) = self.ready.pop_front() {
                return Some(self.release(pending));
            }
            match self.phase {
                Phase::Events => {
                    if !self.room_for(1) {
                        self.phase = Phase::Drain;
                        continue;
                    }
                    match self.sim.next() {
                        Some(event) => self.admit(event),
                        None => self.phase = Phase::Drain,
                    }
                }
                Phase::Drain => {
                    self.drain();
                    self.phase = Phase::Watermarks;
                }
                Phase::Watermarks => {
                    self.watermarks();
                    self.phase = Phase::Done;
                }
                Phase::Done => return None,
            }
        }
    }
}

/// The topic's name in ids (the names given on the command line do not change the stream).
fn topic_label(topic: Topic) -> &'static str {
    match topic {
        Topic::Clicks => "clickstream",
        Topic::Orders => "orders",
    }
}

/// The key of the watermark user of `partition`: `__watermark__<n>` with the smallest `n` whose
/// key Kafka's default partitioner puts on that partition.
pub fn watermark_key(partition: i32, partitions: i32) -> String {
    (0u64..)
        .map(|n| format!("__watermark__{n}"))
        .find(|key| partition_for(key.as_bytes(), partitions) == partition)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use trendstream_events::{DecodeError, decode_click, decode_order};

    use super::*;

    fn config(seed: u64, count: u64) -> GenConfig {
        GenConfig {
            seed,
            users: 300,
            count,
            start_ts: crate::config::DEFAULT_START_TS,
            partitions: Partitions {
                clicks: 12,
                orders: 4,
            },
            fraud_rate: 0.05,
            out_of_order_rate: 0.05,
            out_of_order_max_ms: 20_000,
            late_rate: 0.01,
            max_out_of_orderness_ms: 30_000,
            poison_rate: 0.01,
        }
    }

    fn run(config: GenConfig) -> (Vec<Record>, Counts) {
        let mut generator = Generator::new(config);
        let records: Vec<Record> = generator.by_ref().collect();
        (records, generator.counts().clone())
    }

    fn decode(record: &Record) -> Result<(String, i64), DecodeError> {
        match record.topic {
            Topic::Clicks => decode_click(record.value.as_bytes()).map(|c| (c.user_id, c.ts)),
            Topic::Orders => decode_order(record.value.as_bytes()).map(|o| (o.user_id, o.ts)),
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_records_and_another_seed_does_not() {
        let (a, counts_a) = run(config(11, 5_000));
        let (b, counts_b) = run(config(11, 5_000));
        let (c, _) = run(config(12, 5_000));
        assert_eq!(a, b);
        assert_eq!(counts_a, counts_b);
        assert_ne!(a, c);
    }

    #[test]
    fn count_records_then_one_watermark_record_per_partition() {
        let (records, counts) = run(config(1, 7_777));
        assert_eq!(counts.events, 7_777);
        assert_eq!(records.len(), 7_777 + 16);
        assert_eq!(counts.records, records.len() as u64);
        assert!(
            records[..7_777]
                .iter()
                .all(|r| r.kind != RecordKind::Watermark)
        );
        assert!(
            records[7_777..]
                .iter()
                .all(|r| r.kind == RecordKind::Watermark)
        );
        // Stopped before the first record: only the watermark records, a day after the start.
        let mut generator = Generator::new(config(1, 0));
        generator.stop();
        assert_eq!(generator.by_ref().count(), 16);
        assert_eq!(
            generator.counts().watermark_ts,
            Some(crate::config::DEFAULT_START_TS + WATERMARK_OFFSET_MS)
        );
        // Count 0 is unlimited; stopping mid-run still ends with the watermark records.
        let mut generator = Generator::new(config(1, 0));
        let head: Vec<Record> = generator.by_ref().take(50_000).collect();
        assert!(head.iter().all(|r| r.kind != RecordKind::Watermark));
        generator.stop();
        let tail: Vec<Record> = generator.by_ref().collect();
        let held = tail.len() - 16;
        assert!(tail[held..].iter().all(|r| r.kind == RecordKind::Watermark));
        assert_eq!(generator.counts().events, (50_000 + held) as u64);
    }

    #[test]
    fn every_record_is_on_its_keys_partition_and_valid_events_decode() {
        let (records, counts) = run(config(2, 20_000));
        let mut ids = std::collections::HashSet::new();
        let mut poison = 0;
        for record in &records {
            let partitions = Partitions {
                clicks: 12,
                orders: 4,
            }
            .of(record.topic);
            assert_eq!(
                record.partition,
                partition_for(record.key.as_bytes(), partitions)
            );
            match record.kind {
                RecordKind::Poison(_) => {
                    poison += 1;
                    assert!(decode(record).is_err(), "poison decoded: {}", record.value);
                    assert_eq!(record.ts, None);
                }
                _ => {
                    let (user, ts) =
                        decode(record).unwrap_or_else(|e| panic!("{e}: {}", record.value));
                    assert_eq!(user, record.key);
                    assert_eq!(Some(ts), record.ts);
                    let value: serde_json::Value =
                        serde_json::from_str(&record.value).expect("json");
                    assert!(
                        ids.insert(value["event_id"].as_str().unwrap_or_default().to_owned()),
                        "duplicate event id"
                    );
                }
            }
        }
        assert!(poison > 100, "{poison}");
        assert_eq!(counts.poison.total, poison);
        assert_eq!(
            counts.poison.total,
            counts.poison.garbage
                + counts.poison.truncated_json
                + counts.poison.wrong_type
                + counts.poison.float_money
                + counts.poison.unknown_variant
                + counts.poison.invalid
        );
        assert_eq!(
            counts.events,
            counts.clicks + counts.orders + counts.poison.total
        );
        assert_eq!(
            counts.orders,
            counts.orders_placed + counts.orders_cancelled + counts.orders_refunded
        );
        assert!(
            counts.orders_cancelled > 0 && counts.orders_refunded > 0,
            "{counts:?}"
        );
    }

    /// Replays the records through per-partition watermarks (the runtime's rule) and checks the
    /// counted out-of-order and late events are exactly what a processor sees.
    #[test]
    fn out_of_order_and_late_counts_match_per_partition_watermarks() {
        let cfg = config(3, 30_000);
        let (records, counts) = run(cfg);
        let mut newest: HashMap<(Topic, i32), i64> = HashMap::new();
        let (mut late, mut ooo, mut max_lag_ooo) = (0, 0, 0);
        for record in records.iter().filter(|r| r.kind != RecordKind::Watermark) {
            let Some(ts) = record.ts else { continue };
            let slot = newest
                .entry((record.topic, record.partition))
                .or_insert(i64::MIN);
            let watermark = slot.saturating_sub(cfg.max_out_of_orderness_ms + 1);
            if *slot != i64::MIN && ts <= watermark {
                late += 1;
                assert_eq!(record.kind, RecordKind::Late);
                assert!(ts < watermark - 500, "late by a clear margin");
            } else if ts < *slot {
                ooo += 1;
                max_lag_ooo = max_lag_ooo.max(*slot - ts);
                assert_eq!(record.kind, RecordKind::OutOfOrder);
            } else {
                assert_eq!(record.kind, RecordKind::InOrder);
            }
            *slot = (*slot).max(ts);
        }
        assert_eq!((counts.late, counts.out_of_order), (late, ooo));
        assert!(late > 100 && ooo > 500, "late {late}, out of order {ooo}");
        assert!(max_lag_ooo <= cfg.out_of_order_max_ms, "{max_lag_ooo}");
    }

    #[test]
    fn watermark_records_close_every_partition_of_every_topic() {
        let (records, counts) = run(config(4, 3_000));
        let max = counts.max_ts.expect("events");
        let marks: Vec<&Record> = records
            .iter()
            .filter(|r| r.kind == RecordKind::Watermark)
            .collect();
        let mut seen = BTreeMap::new();
        for mark in &marks {
            let partitions = Partitions {
                clicks: 12,
                orders: 4,
            }
            .of(mark.topic);
            assert!(mark.key.starts_with("__watermark__"));
            assert_eq!(
                partition_for(mark.key.as_bytes(), partitions),
                mark.partition
            );
            let (user, ts) = decode(mark).expect("a valid event");
            assert_eq!(user, mark.key);
            assert_eq!(ts, max + WATERMARK_OFFSET_MS);
            seen.insert((mark.topic, mark.partition), ());
        }
        assert_eq!(marks.len(), 16);
        assert_eq!(seen.len(), 16);
        assert!(
            records
                .iter()
                .filter_map(|r| r.ts)
                .all(|ts| ts <= max + WATERMARK_OFFSET_MS)
        );
        assert_eq!(watermark_key(3, 12), watermark_key(3, 12));
    }

    /// Every counted planted pattern is in the orders: per user, the rule's condition holds.
    #[test]
    fn planted_fraud_patterns_are_present_and_counted() {
        let mut cfg = config(5, 40_000);
        cfg.poison_rate = 0.0;
        let (records, counts) = run(cfg);
        let mut placed: BTreeMap<String, Vec<(i64, rust_decimal::Decimal)>> = BTreeMap::new();
        for record in records
            .iter()
            .filter(|r| r.topic == Topic::Orders && r.kind != RecordKind::Watermark)
        {
            let order = decode_order(record.value.as_bytes()).expect("order");
            if order.status == OrderStatus::Placed {
                placed
                    .entry(order.user_id)
                    .or_default()
                    .push((order.ts, order.amount.amount()));
            }
        }
        let five_min = 5 * 60 * 1000;
        let high = rust_decimal::Decimal::from(5000);
        let (mut rapid_users, mut burst_users, mut first_users) = (0, 0, 0);
        for (user, orders) in &mut placed {
            orders.sort();
            if orders.windows(3).any(|w| w[2].0 - w[0].0 < five_min) {
                rapid_users += 1;
            }
            let big: Vec<i64> = orders.iter().filter(|o| o.1 > high).map(|o| o.0).collect();
            if big.windows(3).any(|w| w[2] - w[0] < five_min) {
                burst_users += 1;
            }
            if user.starts_with("u-f") {
                assert!(orders[0].1 > high, "{user}: {orders:?}");
                first_users += 1;
            }
        }
        let f = counts.fraud;
        assert!(
            f.rapid_orders > 10 && f.high_value_burst > 10 && f.high_value_first_order > 10,
            "{f:?}"
        );
        assert_eq!(first_users, f.high_value_first_order);
        assert!(
            burst_users >= f.high_value_burst.min(1),
            "{burst_users} {f:?}"
        );
        // A user may be planted twice; every burst is also a rapid sequence.
        assert!(
            rapid_users >= (f.rapid_orders + f.high_value_burst) / 2,
            "{rapid_users} {f:?}"
        );
        assert!(burst_users * 2 >= f.high_value_burst, "{burst_users} {f:?}");
    }
}
