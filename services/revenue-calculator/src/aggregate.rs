//! Revenue arithmetic: what one order adds to a window, and how partial windows add up.
//!
//! Placed orders add their amount and count one order; cancellations and refunds subtract both
//! (in the window of the reversal's own event time: a closed window is never rewritten). Paid
//! events are a status change of revenue already counted and add nothing. Per category, an
//! order adds the value of its lines in that category and counts once.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use trendstream_events::{
    CategoryRevenue, Currency, Money, OrderEvent, OrderStatus, RevenueWindow,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AggregateError {
    #[error("currency {found} is not the job's reporting currency {expected}")]
    Currency { found: String, expected: String },
    #[error("amount overflow in {0}")]
    Overflow(&'static str),
}

/// Sums of one window (a partial from one partition, or the total).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub gmv: Money,
    pub orders: i64,
    pub per_category: BTreeMap<String, CategoryRevenue>,
}

impl Totals {
    /// Adds `order` (or takes it back out, for a reversal). Orders in another currency are an
    /// error: the caller dead-letters them rather than mixing currencies.
    pub fn add_order(
        &mut self,
        order: &OrderEvent,
        currency: &Currency,
    ) -> Result<(), AggregateError> {
        if &order.currency != currency {
            return Err(AggregateError::Currency {
                found: order.currency.as_str().to_owned(),
                expected: currency.as_str().to_owned(),
            });
        }
        let sign = match order.status {
            OrderStatus::Placed => 1,
            status if status.is_reversal() => -1,
            _ => return Ok(()),
        };
        let signed = |m: Money| if sign < 0 { m.negated() } else { m };
        self.gmv = self
            .gmv
            .checked_add(signed(order.amount))
            .ok_or(AggregateError::Overflow("gmv"))?;
        self.orders += sign;
        let mut per_order: BTreeMap<&str, Money> = BTreeMap::new();
        for item in &order.items {
            let line = item
                .unit_price
                .checked_mul_quantity(item.quantity)
                .ok_or(AggregateError::Overflow("order line"))?;
            let total = per_order
                .entry(item.category.as_str())
                .or_insert(Money::ZERO);
            *total = total
                .checked_add(line)
                .ok_or(AggregateError::Overflow("category"))?;
        }
        for (category, value) in per_order {
            let entry = self.per_category.entry(category.to_owned()).or_default();
            entry.gmv = entry
                .gmv
                .checked_add(signed(value))
                .ok_or(AggregateError::Overflow("category gmv"))?;
            entry.orders += sign;
        }
        Ok(())
    }

    /// Adds another partial of the same window.
    pub fn merge(&mut self, other: &Totals) -> Result<(), AggregateError> {
        self.gmv = self
            .gmv
            .checked_add(other.gmv)
            .ok_or(AggregateError::Overflow("gmv"))?;
        self.orders += other.orders;
        for (category, revenue) in &other.per_category {
            let entry = self.per_category.entry(category.clone()).or_default();
            entry.gmv = entry
                .gmv
                .checked_add(revenue.gmv)
                .ok_or(AggregateError::Overflow("category gmv"))?;
            entry.orders += revenue.orders;
        }
        Ok(())
    }

    pub fn into_window(self, start: i64, end: i64, currency: Currency) -> RevenueWindow {
        RevenueWindow::new(
            start,
            end,
            currency,
            self.gmv,
            self.orders,
            self.per_category,
        )
    }
}

/// The windows a merge may close: every pending window whose last millisecond every source
/// partition's watermark has passed. `sources` holds the watermark each partition reported;
/// until all `source_count` partitions have reported, nothing is complete.
pub fn complete_windows(
    pending: impl IntoIterator<Item = (i64, i64)>,
    sources: &BTreeMap<i32, i64>,
    source_count: usize,
) -> Vec<(i64, i64)> {
    if sources.len() < source_count {
        return Vec::new();
    }
    let Some(frontier) = sources.values().copied().min() else {
        return Vec::new();
    };
    let mut done: Vec<(i64, i64)> = pending
        .into_iter()
        .filter(|(_, end)| end - 1 <= frontier)
        .collect();
    done.sort();
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use trendstream_events::OrderItem;

    fn money(text: &str) -> Money {
        text.parse().expect("money")
    }

    fn order(status: OrderStatus, amount: &str, items: &[(&str, u32, &str)]) -> OrderEvent {
        OrderEvent {
            event_id: "e".into(),
            order_id: "o".into(),
            user_id: "u".into(),
            status,
            amount: money(amount),
            currency: Currency::default(),
            items: items
                .iter()
                .map(|(category, quantity, price)| OrderItem {
                    product_id: "p".into(),
                    category: (*category).into(),
                    quantity: *quantity,
                    unit_price: money(price),
                })
                .collect(),
            ts: 0,
        }
    }

    #[test]
    fn placed_adds_reversals_subtract_paid_is_neutral() {
        let try_ = Currency::default();
        let mut totals = Totals::default();
        let cases = [
            (
                order(
                    OrderStatus::Placed,
                    "100.50",
                    &[("books", 2, "25.25"), ("toys", 1, "50.00")],
                ),
                "100.50",
                1,
            ),
            (
                order(OrderStatus::Paid, "100.50", &[("books", 2, "25.25")]),
                "100.50",
                1,
            ),
            (
                order(OrderStatus::Placed, "10.00", &[("books", 1, "10.00")]),
                "110.50",
                2,
            ),
            (
                order(OrderStatus::Refunded, "10.00", &[("books", 1, "10.00")]),
                "100.50",
                1,
            ),
            (
                order(
                    OrderStatus::Cancelled,
                    "100.50",
                    &[("books", 2, "25.25"), ("toys", 1, "50.00")],
                ),
                "0.00",
                0,
            ),
        ];
        for (event, gmv, orders) in cases {
            totals.add_order(&event, &try_).expect("add");
            assert_eq!(
                (totals.gmv, totals.orders),
                (money(gmv), orders),
                "{:?}",
                event.status
            );
        }
        assert_eq!(totals.per_category["books"].gmv, money("0.00"));
        assert_eq!(totals.per_category["books"].orders, 0);
        assert_eq!(totals.per_category["toys"].orders, 0);
    }

    #[test]
    fn another_currency_is_refused() {
        let mut event = order(OrderStatus::Placed, "1.00", &[]);
        event.currency = "USD".parse().expect("currency");
        let err = Totals::default()
            .add_order(&event, &Currency::default())
            .expect_err("usd");
        assert!(err.to_string().contains("USD"), "{err}");
    }

    #[test]
    fn partials_merge_into_the_total_and_the_average_follows() {
        let try_ = Currency::default();
        let mut a = Totals::default();
        a.add_order(
            &order(OrderStatus::Placed, "30.00", &[("books", 1, "30.00")]),
            &try_,
        )
        .expect("add");
        let mut b = Totals::default();
        b.add_order(
            &order(OrderStatus::Placed, "10.00", &[("toys", 1, "10.00")]),
            &try_,
        )
        .expect("add");
        a.merge(&b).expect("merge");
        let window = a.into_window(0, 60_000, try_);
        assert_eq!(window.gmv, money("40.00"));
        assert_eq!(window.orders, 2);
        assert_eq!(window.average_order_value, money("20.00"));
        assert_eq!(window.per_category.len(), 2);
    }

    #[test]
    fn a_window_completes_when_every_source_passed_it() {
        let pending = [(0, 60_000), (60_000, 120_000)];
        let sources = |marks: &[(i32, i64)]| marks.iter().copied().collect::<BTreeMap<_, _>>();
        type Case<'a> = (&'a [(i32, i64)], usize, &'a [(i64, i64)]);
        let cases: [Case<'_>; 5] = [
            (&[(0, 200_000)], 2, &[]),
            (&[(0, 200_000), (1, 59_998)], 2, &[]),
            (&[(0, 200_000), (1, 59_999)], 2, &[(0, 60_000)]),
            (
                &[(0, 200_000), (1, 119_999)],
                2,
                &[(0, 60_000), (60_000, 120_000)],
            ),
            (&[(0, 119_999)], 1, &[(0, 60_000), (60_000, 120_000)]),
        ];
        for (marks, count, expected) in cases {
            assert_eq!(
                complete_windows(pending, &sources(marks), count),
                expected,
                "{marks:?} of {count}"
            );
        }
    }
}
