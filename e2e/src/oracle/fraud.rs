//! What fraud-detector must output for an event file, with the built-in rules.
//!
//! Deliberately simple and separate from the processor (docs/processors.md, "fraud-detector"):
//! no buffering, timers or incremental windows. It replays the file once per partition to find
//! which order events are late (the documented watermark: `max event time - bound - 1`, records
//! compared with the watermark as it was before them), then looks at each user's on-time events
//! all at once, sorted, and applies the three rules by brute force.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use trendstream_events::feature_store::{KeySpace, valid_id};
use trendstream_events::{Currency, FraudAlert, Money, OrderEvent, OrderStatus, Severity};

const FIVE_MINUTES: i64 = 5 * 60 * 1000;

/// One line of the event file.
#[derive(Debug, Clone, Deserialize)]
pub struct FileRecord {
    pub topic: String,
    pub partition: i32,
    pub key: Option<String>,
    pub value: String,
}

/// Everything the oracle expects from a run.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Expected {
    /// Alerts on the output topic, sorted by alert id.
    pub alerts: Vec<FraudAlert>,
    /// Payloads expected on the late topic, in file order.
    pub late: Vec<String>,
    /// Payloads expected on the dead-letter topic, in file order.
    pub dead_letters: Vec<String>,
    /// Redis string keys (alert JSON) and their alerts.
    pub redis_alerts: BTreeMap<String, FraudAlert>,
    /// Redis sorted sets: key to (member, score), sorted.
    pub redis_indexes: BTreeMap<String, BTreeSet<(String, i64)>>,
}

/// Parses an event file (JSON Lines).
pub fn parse_event_file(text: &str) -> anyhow::Result<Vec<FileRecord>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| anyhow::anyhow!("event file line {}: {e}", i + 1))
        })
        .collect()
}

/// The expected outputs of fraud-detector reading `orders_topic` from `records` with the
/// built-in rules, bounded out-of-orderness `bound_ms`, Redis key prefix `prefix`.
pub fn expected(
    records: &[FileRecord],
    orders_topic: &str,
    bound_ms: i64,
    prefix: &str,
) -> Expected {
    let mut out = Expected::default();
    // Per partition: watermark, and the on-time events per user.
    let mut watermark: BTreeMap<i32, i64> = BTreeMap::new();
    let mut max_ts: BTreeMap<i32, i64> = BTreeMap::new();
    let mut on_time: BTreeMap<String, Vec<(i32, OrderEvent)>> = BTreeMap::new();
    for record in records.iter().filter(|r| r.topic == orders_topic) {
        let Ok(order) = trendstream_events::decode_order(record.value.as_bytes()) else {
            out.dead_letters.push(record.value.clone());
            continue;
        };
        let wm = *watermark.get(&record.partition).unwrap_or(&i64::MIN);
        if order.ts <= wm {
            out.late.push(record.value.clone());
        } else {
            let events = on_time.entry(order.user_id.clone()).or_default();
            // A repeated event id is dropped while the first one still waits.
            let duplicate = events
                .iter()
                .any(|(_, e)| e.event_id == order.event_id && e.ts > wm);
            if !duplicate {
                events.push((record.partition, order.clone()));
            }
        }
        let max = max_ts.entry(record.partition).or_insert(i64::MIN);
        *max = (*max).max(order.ts);
        let new_wm = max.saturating_sub(bound_ms).saturating_sub(1);
        watermark.insert(record.partition, wm.max(new_wm));
    }
    for (user, events) in on_time {
        // Only what the final watermark of the partition reached is evaluated.
        let mut evaluated: Vec<OrderEvent> = events
            .into_iter()
            .filter(|(p, e)| e.ts <= *watermark.get(p).unwrap_or(&i64::MIN))
            .map(|(_, e)| e)
            .collect();
        evaluated.sort_by(|a, b| {
            (a.ts, &a.order_id, &a.event_id).cmp(&(b.ts, &b.order_id, &b.event_id))
        });
        let placed: Vec<&OrderEvent> = evaluated
            .iter()
            .filter(|e| e.status == OrderStatus::Placed)
            .collect();
        let high_value =
            |e: &&OrderEvent| e.currency == Currency::TRY && e.amount > Money::new(5000.into());
        out.alerts
            .extend(rapid("RAPID_ORDERS", Severity::Medium, &user, &placed));
        if let Some(first) = placed.first().filter(|e| high_value(e)) {
            out.alerts.push(alert(
                "HIGH_VALUE_FIRST_ORDER",
                Severity::High,
                &user,
                &[first],
                "the user's first matching event".into(),
            ));
        }
        let burst: Vec<&OrderEvent> = placed.iter().copied().filter(|e| high_value(e)).collect();
        out.alerts
            .extend(rapid("HIGH_VALUE_BURST", Severity::Critical, &user, &burst));
    }
    out.alerts.sort_by(|a, b| a.alert_id.cmp(&b.alert_id));
    let keys = KeySpace::new(prefix);
    for a in out.alerts.iter().filter(|a| valid_id(&a.user_id)) {
        out.redis_alerts.insert(keys.alert(&a.alert_id), a.clone());
        for index in [keys.user_alerts(&a.user_id), keys.alerts_all()] {
            out.redis_indexes
                .entry(index)
                .or_default()
                .insert((a.alert_id.clone(), a.ts));
        }
    }
    out
}

/// One alert per order that has at least 2 earlier ones (in the sorted order) within 5 minutes
/// before it, listing all of them.
fn rapid(rule: &str, severity: Severity, user: &str, orders: &[&OrderEvent]) -> Vec<FraudAlert> {
    let mut alerts = Vec::new();
    for (i, last) in orders.iter().enumerate() {
        let window: Vec<&OrderEvent> = orders[..=i]
            .iter()
            .copied()
            .filter(|e| e.ts >= last.ts - FIVE_MINUTES)
            .collect();
        if window.len() >= 3 {
            let details = format!("{} matching events within 5m", window.len());
            alerts.push(alert(rule, severity, user, &window, details));
        }
    }
    alerts
}

fn alert(
    rule: &str,
    severity: Severity,
    user: &str,
    orders: &[&OrderEvent],
    details: String,
) -> FraudAlert {
    let order_ids: Vec<String> = orders.iter().map(|o| o.order_id.clone()).collect();
    let first = orders.first().map_or(0, |o| o.ts);
    let last = orders.last().map_or(0, |o| o.ts);
    let currency = orders.last().map_or(Currency::TRY, |o| o.currency);
    let mut total = Money::ZERO;
    for o in orders.iter().filter(|o| o.currency == currency) {
        total = total.checked_add(o.amount).unwrap_or(total);
    }
    FraudAlert {
        alert_id: FraudAlert::deterministic_id(rule, user, &order_ids, first),
        rule: rule.to_owned(),
        user_id: user.to_owned(),
        order_ids,
        window_start: first,
        window_end: last,
        ts: last,
        severity,
        total_amount: total,
        currency,
        details: Some(details),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(partition: i32, user: &str, order: &str, ts: i64, amount: &str) -> FileRecord {
        FileRecord {
            topic: "orders".into(),
            partition,
            key: Some(user.into()),
            value: format!(
                r#"{{"event_id":"e-{order}","order_id":"{order}","user_id":"{user}","status":"placed","amount":"{amount}","ts":{ts}}}"#
            ),
        }
    }

    #[test]
    fn boundaries_lateness_and_redis_keys() {
        let m = 60_000;
        let records = vec![
            line(0, "u1", "a", 0, "6000"),
            line(0, "u1", "b", 2 * m, "7000"),
            line(0, "u1", "c", 5 * m, "5000"),
            line(0, "u2", "x", 10 * m, "1"),
            // watermark now 10m - 30s - 1 ms: late
            line(0, "u2", "y", 9 * m, "1"),
            FileRecord {
                topic: "orders".into(),
                partition: 0,
                key: None,
                value: "{not json".into(),
            },
            line(0, "u3", "d", 5 * m + 1, "9000"),
        ];
        let got = expected(&records, "orders", 30_000, "p");
        let rules: Vec<(&str, Vec<&str>)> = got
            .alerts
            .iter()
            .map(|a| {
                (
                    a.rule.as_str(),
                    a.order_ids.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        // u1: first order above 5000, three orders within 5 minutes (c is exactly 5000: no
        // burst). y and d arrive behind the watermark (9.5 min - 1 ms): late. x is never
        // reached by the final watermark.
        let mut want = vec![
            ("HIGH_VALUE_FIRST_ORDER", vec!["a"]),
            ("RAPID_ORDERS", vec!["a", "b", "c"]),
        ];
        let mut have = rules.clone();
        want.sort();
        have.sort();
        assert_eq!(have, want);
        assert_eq!(got.late.len(), 2);
        assert_eq!(got.dead_letters, vec!["{not json".to_owned()]);
        assert_eq!(got.redis_alerts.len(), 2);
        assert_eq!(got.redis_indexes["p:alerts:all"].len(), 2);
        assert_eq!(got.redis_indexes["p:alerts:user:u1"].len(), 2);
    }
}
