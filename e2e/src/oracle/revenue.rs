//! The revenue-calculator oracle: docs/processors.md ("revenue-calculator") re-implemented
//! plainly, sharing no code with the processor. It keeps every counted order per window in a
//! list and adds them up at the end.

use super::sessions::EventLine;
use std::collections::BTreeMap;
use trendstream_events::{
    CategoryRevenue, Currency, Money, OrderStatus, RevenueWindow, decode_order,
};

/// The job's settings, as the oracle needs them.
pub struct Settings {
    pub topic: String,
    pub window_ms: i64,
    pub bound_ms: i64,
    pub currency: Currency,
}

/// What the job must produce.
#[derive(Debug, Default)]
pub struct Expected {
    /// Emitted windows, by start.
    pub windows: BTreeMap<i64, RevenueWindow>,
    /// Orders sent to the late topic.
    pub late: usize,
    /// Records sent to the dead-letter topic (undecodable, or another currency).
    pub dead: usize,
}

/// One counted order: sign (+1 placed, -1 reversal), amount, and (category, line value) pairs.
type Counted = (i64, Money, Vec<(String, Money)>);

pub fn expected(settings: &Settings, lines: &[EventLine]) -> Expected {
    let mut out = Expected::default();
    // Per partition: the largest event time seen.
    let mut max_seen: BTreeMap<i32, i64> = BTreeMap::new();
    // Per window start: the (sign, amount, lines) of each counted order.
    let mut counted: BTreeMap<i64, Vec<Counted>> = BTreeMap::new();
    for line in lines.iter().filter(|l| l.topic == settings.topic) {
        let Ok(order) = decode_order(line.value.as_bytes()) else {
            out.dead += 1;
            continue;
        };
        let watermark = max_seen
            .get(&line.partition)
            .map_or(i64::MIN, |m| m - settings.bound_ms - 1);
        let start = order.ts - order.ts.rem_euclid(settings.window_ms);
        let end = start + settings.window_ms;
        if end - 1 <= watermark {
            out.late += 1;
        } else if order.currency != settings.currency {
            out.dead += 1;
        } else {
            let sign = match order.status {
                OrderStatus::Placed => 1,
                OrderStatus::Cancelled | OrderStatus::Refunded => -1,
                _ => 0,
            };
            if sign != 0 {
                let lines = order
                    .items
                    .iter()
                    .map(|i| {
                        let mut value = Money::ZERO;
                        for _ in 0..i.quantity {
                            value = value.checked_add(i.unit_price).unwrap_or(value);
                        }
                        (i.category.clone(), value)
                    })
                    .collect();
                counted
                    .entry(start)
                    .or_default()
                    .push((sign, order.amount, lines));
            }
        }
        let seen = max_seen.entry(line.partition).or_insert(order.ts);
        *seen = (*seen).max(order.ts);
    }
    // A window is emitted once every partition's watermark passed it.
    let frontier = max_seen
        .values()
        .map(|m| m - settings.bound_ms - 1)
        .min()
        .unwrap_or(i64::MIN);
    for (start, orders) in counted {
        let end = start + settings.window_ms;
        if end - 1 > frontier {
            continue;
        }
        let mut gmv = Money::ZERO;
        let mut count = 0;
        let mut per_category: BTreeMap<String, CategoryRevenue> = BTreeMap::new();
        for (sign, amount, lines) in orders {
            let signed = |m: Money| if sign < 0 { m.negated() } else { m };
            gmv = gmv.checked_add(signed(amount)).unwrap_or(gmv);
            count += sign;
            let mut by_category: BTreeMap<String, Money> = BTreeMap::new();
            for (category, value) in lines {
                let total = by_category.entry(category).or_insert(Money::ZERO);
                *total = total.checked_add(value).unwrap_or(*total);
            }
            for (category, value) in by_category {
                let entry = per_category.entry(category).or_default();
                entry.gmv = entry.gmv.checked_add(signed(value)).unwrap_or(entry.gmv);
                entry.orders += sign;
            }
        }
        out.windows.insert(
            start,
            RevenueWindow::new(start, end, settings.currency, gmv, count, per_category),
        );
    }
    out
}
