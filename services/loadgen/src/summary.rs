//! What a run produced, counted as it is produced; printed at the end (text or JSON).

use std::fmt;

use serde::Serialize;

use crate::record::{PoisonKind, RecordKind, Topic};
use crate::sim::FraudPattern;

/// Planted fraud patterns (counted when the event completing the pattern is produced).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FraudCounts {
    pub rapid_orders: u64,
    pub high_value_first_order: u64,
    pub high_value_burst: u64,
}

/// Poison pills by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PoisonCounts {
    pub total: u64,
    pub garbage: u64,
    pub truncated_json: u64,
    pub wrong_type: u64,
    pub float_money: u64,
    pub unknown_variant: u64,
    pub invalid: u64,
}

/// Counts of one run. `records` is every record produced including poison pills and watermark
/// records; `events` excludes the watermark records (it equals `--count` unless the model ran
/// dry).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub records: u64,
    pub events: u64,
    pub clicks: u64,
    pub orders: u64,
    pub orders_placed: u64,
    pub orders_cancelled: u64,
    pub orders_refunded: u64,
    pub out_of_order: u64,
    pub late: u64,
    pub poison: PoisonCounts,
    pub fraud: FraudCounts,
    pub watermark_records: u64,
    /// Smallest and largest event time of the valid events (not the watermark records).
    pub min_ts: Option<i64>,
    pub max_ts: Option<i64>,
    /// Event time of the watermark records.
    pub watermark_ts: Option<i64>,
    /// Records per topic (all kinds).
    pub clickstream_records: u64,
    pub orders_records: u64,
}

impl Counts {
    pub(crate) fn record(&mut self, topic: Topic, kind: RecordKind) {
        self.records += 1;
        match topic {
            Topic::Clicks => self.clickstream_records += 1,
            Topic::Orders => self.orders_records += 1,
        }
        match kind {
            RecordKind::Watermark => {
                self.watermark_records += 1;
                return;
            }
            RecordKind::Poison(kind) => {
                self.events += 1;
                self.poison.total += 1;
                let slot = match kind {
                    PoisonKind::Garbage => &mut self.poison.garbage,
                    PoisonKind::TruncatedJson => &mut self.poison.truncated_json,
                    PoisonKind::WrongType => &mut self.poison.wrong_type,
                    PoisonKind::FloatMoney => &mut self.poison.float_money,
                    PoisonKind::UnknownVariant => &mut self.poison.unknown_variant,
                    PoisonKind::Invalid => &mut self.poison.invalid,
                };
                *slot += 1;
                return;
            }
            RecordKind::OutOfOrder => self.out_of_order += 1,
            RecordKind::Late => self.late += 1,
            RecordKind::InOrder => {}
        }
        self.events += 1;
        match topic {
            Topic::Clicks => self.clicks += 1,
            Topic::Orders => self.orders += 1,
        }
    }

    pub(crate) fn fraud(&mut self, pattern: FraudPattern) {
        match pattern {
            FraudPattern::RapidOrders => self.fraud.rapid_orders += 1,
            FraudPattern::HighValueFirstOrder => self.fraud.high_value_first_order += 1,
            FraudPattern::HighValueBurst => self.fraud.high_value_burst += 1,
        }
    }

    pub(crate) fn event_time(&mut self, ts: i64) {
        self.min_ts = Some(self.min_ts.map_or(ts, |m| m.min(ts)));
        self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
    }
}

/// A finished run: counts plus how long producing took.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub seed: u64,
    pub dry_run: bool,
    pub elapsed_seconds: f64,
    pub records_per_second: f64,
    pub events_file: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        let ts = |t: Option<i64>| {
            t.and_then(|t| trendstream_events::EventTime(t).to_rfc3339())
                .unwrap_or_else(|| "-".to_owned())
        };
        writeln!(
            f,
            "loadgen summary (seed {}{})",
            self.seed,
            if self.dry_run { ", dry run" } else { "" }
        )?;
        writeln!(
            f,
            "  records produced     {} in {:.2} s ({:.0} records/s)",
            c.records, self.elapsed_seconds, self.records_per_second
        )?;
        writeln!(
            f,
            "  events               {} (clickstream {}, orders {})",
            c.events, c.clickstream_records, c.orders_records
        )?;
        writeln!(f, "  valid clicks         {}", c.clicks)?;
        writeln!(
            f,
            "  valid orders         {} (placed {}, cancelled {}, refunded {})",
            c.orders, c.orders_placed, c.orders_cancelled, c.orders_refunded
        )?;
        writeln!(
            f,
            "  fraud patterns       rapid_orders {}, high_value_first_order {}, high_value_burst {}",
            c.fraud.rapid_orders, c.fraud.high_value_first_order, c.fraud.high_value_burst
        )?;
        writeln!(f, "  out-of-order events  {}", c.out_of_order)?;
        writeln!(f, "  late events          {}", c.late)?;
        writeln!(
            f,
            "  poison pills         {} (garbage {}, truncated_json {}, wrong_type {}, float_money {}, unknown_variant {}, invalid {})",
            c.poison.total,
            c.poison.garbage,
            c.poison.truncated_json,
            c.poison.wrong_type,
            c.poison.float_money,
            c.poison.unknown_variant,
            c.poison.invalid
        )?;
        writeln!(
            f,
            "  watermark records    {} (ts {})",
            c.watermark_records,
            ts(c.watermark_ts)
        )?;
        writeln!(
            f,
            "  event time           {} .. {}",
            ts(c.min_ts),
            ts(c.max_ts)
        )?;
        if let Some(path) = &self.events_file {
            writeln!(f, "  events file          {path}")?;
        }
        Ok(())
    }
}
