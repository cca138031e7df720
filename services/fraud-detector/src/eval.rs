//! The matcher: one user's events, in event-time order, against the rules. Pure: no I/O, no
//! clock; the processor stores [`UserState`] and calls [`UserState::advance`] when the
//! partition's watermark moves.
//!
//! # Semantics
//!
//! - Events wait in [`UserState::pending`] until the watermark reaches their event time; then
//!   they are evaluated one by one in `(ts, id, event_id)` order, `id` being the order id of an
//!   order and the event id of a click. Because an event with `ts <= watermark` at arrival is
//!   late (never evaluated), the events evaluated up to a watermark are fixed once it is
//!   reached, so the alerts depend only on the set of on-time events, not on arrival order or
//!   on how the watermark moved.
//! - A second event with an `event_id` already pending is a duplicate and is dropped.
//! - Count rules: at each matching event at `t`, the matching events evaluated so far with
//!   `ts >= t - within` (inclusive: events at `t - within` and `t` both count) are counted; at
//!   `atLeast` or more, one alert lists them all. Every further matching event within the window
//!   alerts again (with the longer list).
//! - First-ever rules: the user's first event (in the order above) matching `of` is checked
//!   against `having`, once; the state is kept without a window.
//! - Sequences (Flink CEP `followedBy` with `skipPastLastEvent`): each event matching the first
//!   step starts a run; a run takes the next event matching its next step (greedy); runs older
//!   than `within` (last step more than `within` after the first) are dropped. When runs
//!   complete, the earliest-started one alerts and all runs that started at or before its last
//!   event are dropped (so the completing event starts no run).
//! - Absence (a sequence whose last step is `absent`): a run whose present steps completed waits
//!   until `first.ts + within`; an event matching the absent step evaluated after the run's last
//!   event with `ts <= first.ts + within` cancels it; otherwise it alerts when the watermark
//!   reaches `first.ts + within`, after every event with `ts <=` that time was evaluated.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use trendstream_events::{
    ClickEvent, ClickEventType, Currency, FraudAlert, Money, OrderEvent, OrderStatus,
};

use crate::rules::{Filter, Rule, RuleKind, Source};
use trendstream_service::duration::format_ms;

/// Most runs a sequence rule keeps per user; beyond it the oldest run is dropped.
pub const MAX_RUNS: usize = 256;

/// What the rules look at in an event, as kept in state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum Body {
    Order {
        status: OrderStatus,
        amount: Money,
        currency: Currency,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        categories: Vec<String>,
    },
    Click {
        event_type: ClickEventType,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        price: Option<Money>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        category: Option<String>,
    },
}

/// One event of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub ts: i64,
    /// The order id of an order, the event id of a click: what an alert lists.
    pub id: String,
    pub event_id: String,
    #[serde(flatten)]
    pub body: Body,
}

impl Event {
    pub fn from_order(order: &OrderEvent) -> Self {
        let mut categories: Vec<String> = order.items.iter().map(|i| i.category.clone()).collect();
        categories.sort();
        categories.dedup();
        Self {
            ts: order.ts,
            id: order.order_id.clone(),
            event_id: order.event_id.clone(),
            body: Body::Order {
                status: order.status,
                amount: order.amount,
                currency: order.currency,
                categories,
            },
        }
    }

    pub fn from_click(click: &ClickEvent) -> Self {
        Self {
            ts: click.ts,
            id: click.event_id.clone(),
            event_id: click.event_id.clone(),
            body: Body::Click {
                event_type: click.event_type,
                price: click.price,
                category: click.category.clone(),
            },
        }
    }

    /// Evaluation order: event time, then id, then event id.
    fn order_key(&self) -> (i64, &str, &str) {
        (self.ts, &self.id, &self.event_id)
    }

    /// The amount and currency an amount condition compares (clicks are priced in TRY).
    fn amount(&self) -> Option<(Money, Currency)> {
        match &self.body {
            Body::Order {
                amount, currency, ..
            } => Some((*amount, *currency)),
            Body::Click { price, .. } => price.map(|p| (p, Currency::TRY)),
        }
    }
}

/// Whether `event` passes `filter`; `previous_ts` is the user's previous evaluated event.
pub fn matches(filter: &Filter, event: &Event, previous_ts: Option<i64>) -> bool {
    let source_ok = matches!(
        (&filter.source, &event.body),
        (Source::Any, _)
            | (Source::Order, Body::Order { .. })
            | (Source::Click, Body::Click { .. })
    );
    if !source_ok {
        return false;
    }
    let (status, event_type, categories): (Option<OrderStatus>, Option<ClickEventType>, Vec<&str>) =
        match &event.body {
            Body::Order {
                status, categories, ..
            } => (
                Some(*status),
                None,
                categories.iter().map(String::as_str).collect(),
            ),
            Body::Click {
                event_type,
                category,
                ..
            } => (
                None,
                Some(*event_type),
                category.iter().map(String::as_str).collect(),
            ),
        };
    if let Some(wanted) = &filter.statuses
        && !status.is_some_and(|s| wanted.contains(&s))
    {
        return false;
    }
    if let Some(wanted) = &filter.event_types
        && !event_type.is_some_and(|t| wanted.contains(&t))
    {
        return false;
    }
    if let Some(wanted) = &filter.categories
        && !categories.iter().any(|c| wanted.iter().any(|w| w == c))
    {
        return false;
    }
    if let Some(currency) = filter.currency {
        match event.amount() {
            Some((amount, c)) if c == currency => {
                if !filter.bounds.iter().all(|b| b.holds(amount)) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    if let Some(gap) = filter.after_gap
        && previous_ts.is_some_and(|p| event.ts.saturating_sub(p) <= gap)
    {
        return false;
    }
    true
}

/// An event a rule matched, as an alert needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matched {
    /// Position of the event in the user's evaluation order.
    pub seq: u64,
    pub ts: i64,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<(Money, Currency)>,
}

/// A sequence run: the events it took, and its deadline once only the absence is left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub events: Vec<Matched>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<i64>,
}

/// A rule's per-user state (each kind of rule uses its own part).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleState {
    /// Count rules: the matching events within the window of the latest event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<Matched>,
    /// First-ever rules: the first matching event was seen.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub first_seen: bool,
    /// Sequence rules: the open runs, in start order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<Run>,
}

/// Everything kept for one user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    /// Events not yet evaluated, in evaluation order.
    #[serde(default)]
    pub pending: Vec<Event>,
    /// Event time of the last evaluated event.
    #[serde(default)]
    pub last_ts: Option<i64>,
    /// Evaluated events so far (the next event's `seq`).
    #[serde(default)]
    pub seq: u64,
    /// Per rule name.
    #[serde(default)]
    pub rules: BTreeMap<String, RuleState>,
}

/// What an [`UserState::advance`] produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Advanced {
    pub alerts: Vec<FraudAlert>,
    /// Event times of the events evaluated (their timers are no longer needed).
    pub evaluated_ts: Vec<i64>,
    /// Absence deadlines still ahead of the watermark (each needs a timer).
    pub deadlines: Vec<i64>,
}

impl UserState {
    /// Adds an on-time event; false when an event with its `event_id` is already pending.
    pub fn insert(&mut self, event: Event) -> bool {
        if self.pending.iter().any(|e| e.event_id == event.event_id) {
            return false;
        }
        let at = self
            .pending
            .partition_point(|e| e.order_key() <= event.order_key());
        self.pending.insert(at, event);
        true
    }

    /// Evaluates every pending event with `ts <= watermark` and every absence deadline
    /// `<= watermark`, merged in event-time order (a deadline after the events at its time).
    pub fn advance(&mut self, rules: &[Rule], user_id: &str, watermark: i64) -> Advanced {
        self.rules
            .retain(|name, _| rules.iter().any(|r| &r.name == name));
        let mut out = Advanced::default();
        loop {
            let next_event = self
                .pending
                .first()
                .map(|e| e.ts)
                .filter(|ts| *ts <= watermark);
            let next_deadline = self.next_deadline().filter(|d| *d <= watermark);
            match (next_event, next_deadline) {
                (Some(ts), Some(d)) if d < ts => self.fire_deadlines(rules, user_id, d, &mut out),
                (None, Some(d)) => self.fire_deadlines(rules, user_id, d, &mut out),
                (Some(_), _) => {
                    let event = self.pending.remove(0);
                    out.evaluated_ts.push(event.ts);
                    self.evaluate(rules, user_id, &event, &mut out);
                }
                (None, None) => break,
            }
        }
        out.evaluated_ts.dedup();
        let mut deadlines: Vec<i64> = self
            .rules
            .values()
            .flat_map(|s| s.runs.iter().filter_map(|r| r.deadline))
            .collect();
        deadlines.sort_unstable();
        deadlines.dedup();
        out.deadlines = deadlines;
        out
    }

    fn next_deadline(&self) -> Option<i64> {
        self.rules
            .values()
            .flat_map(|s| s.runs.iter().filter_map(|r| r.deadline))
            .min()
    }

    fn fire_deadlines(&mut self, rules: &[Rule], user_id: &str, at: i64, out: &mut Advanced) {
        for rule in rules {
            let RuleKind::Sequence { within, .. } = &rule.kind else {
                continue;
            };
            let Some(RuleState { runs, .. }) = self.rules.get_mut(&rule.name) else {
                continue;
            };
            while let Some(index) = runs.iter().position(|r| r.deadline == Some(at)) {
                let run = runs.remove(index);
                let last_seq = run.events.last().map_or(0, |m| m.seq);
                let start = run.events.first().map_or(at, |m| m.ts);
                out.alerts.push(build_alert(
                    rule,
                    user_id,
                    &run.events,
                    start,
                    at,
                    at,
                    format!(
                        "{} steps not followed by the absent step within {}",
                        run.events.len(),
                        format_ms(*within)
                    ),
                ));
                runs.retain(|r| r.events.first().is_some_and(|m| m.seq > last_seq));
            }
        }
    }

    fn evaluate(&mut self, rules: &[Rule], user_id: &str, event: &Event, out: &mut Advanced) {
        let previous = self.last_ts;
        let matched = Matched {
            seq: self.seq,
            ts: event.ts,
            id: event.id.clone(),
            amount: event.amount(),
        };
        self.seq += 1;
        self.last_ts = Some(event.ts);
        for rule in rules {
            let state = self.rules.entry(rule.name.clone()).or_default();
            match &rule.kind {
                RuleKind::Count {
                    filter,
                    at_least,
                    within,
                } => {
                    let recent = &mut state.recent;
                    let from = event.ts.saturating_sub(*within);
                    recent.retain(|m| m.ts >= from);
                    if !matches(filter, event, previous) {
                        continue;
                    }
                    recent.push(matched.clone());
                    if recent.len() >= *at_least {
                        let start = recent.first().map_or(event.ts, |m| m.ts);
                        out.alerts.push(build_alert(
                            rule,
                            user_id,
                            recent,
                            start,
                            event.ts,
                            event.ts,
                            format!(
                                "{} matching events within {}",
                                recent.len(),
                                format_ms(*within)
                            ),
                        ));
                    }
                }
                RuleKind::FirstEver { of, having } => {
                    if state.first_seen || !matches(of, event, previous) {
                        continue;
                    }
                    state.first_seen = true;
                    if matches(having, event, previous) {
                        out.alerts.push(build_alert(
                            rule,
                            user_id,
                            std::slice::from_ref(&matched),
                            event.ts,
                            event.ts,
                            event.ts,
                            "the user's first matching event".into(),
                        ));
                    }
                }
                RuleKind::Sequence {
                    steps,
                    absent,
                    within,
                } => {
                    let runs = &mut state.runs;
                    if let Some(alert) = step_sequence(
                        rule,
                        user_id,
                        steps,
                        absent.as_ref(),
                        *within,
                        runs,
                        event,
                        &matched,
                        previous,
                    ) {
                        out.alerts.push(alert);
                    }
                }
            }
        }
    }
}

/// Moves a sequence rule's runs past `event`; returns the alert of a completed positive match.
#[allow(clippy::too_many_arguments)]
fn step_sequence(
    rule: &Rule,
    user_id: &str,
    steps: &[Filter],
    absent: Option<&Filter>,
    within: i64,
    runs: &mut Vec<Run>,
    event: &Event,
    matched: &Matched,
    previous: Option<i64>,
) -> Option<FraudAlert> {
    // Runs still collecting steps that can no longer finish in time.
    runs.retain(|r| {
        r.deadline.is_some() || r.events.first().is_some_and(|m| event.ts - m.ts <= within)
    });
    // Waiting runs: an absent-step event cancels them (deadlines before this event already fired).
    if let Some(absent) = absent
        && matches(absent, event, previous)
    {
        runs.retain(|r| r.deadline.is_none());
    }
    let mut completed: Option<usize> = None;
    for (index, run) in runs.iter_mut().enumerate() {
        if run.deadline.is_some() {
            continue;
        }
        let next = run.events.len();
        if next < steps.len() && matches(&steps[next], event, previous) {
            run.events.push(matched.clone());
            if run.events.len() == steps.len() && completed.is_none() {
                completed = Some(index);
            }
        }
    }
    if let Some(index) = completed {
        let start = runs[index].events.first().map_or(event.ts, |m| m.ts);
        if absent.is_none() {
            let run = runs.remove(index);
            // skipPastLastEvent: every other run started at or before this event.
            runs.clear();
            return Some(build_alert(
                rule,
                user_id,
                &run.events,
                start,
                event.ts,
                event.ts,
                format!(
                    "sequence of {} steps within {}",
                    steps.len(),
                    format_ms(within)
                ),
            ));
        }
        runs[index].deadline = Some(start.saturating_add(within));
        // Later-started runs completed by the same event would be dropped when the earliest one
        // alerts, and cancelled with it otherwise: only the earliest waits.
        runs.retain(|r| r.deadline.is_some() || r.events.len() < steps.len());
    }
    if matches(&steps[0], event, previous) {
        let events = vec![matched.clone()];
        if steps.len() == 1 {
            runs.push(Run {
                events,
                deadline: Some(event.ts.saturating_add(within)),
            });
        } else {
            runs.push(Run {
                events,
                deadline: None,
            });
        }
        if runs.len() > MAX_RUNS
            && let Some(oldest) = runs.iter().position(|r| r.deadline.is_none())
        {
            runs.remove(oldest);
        }
    }
    None
}

/// An alert for `matched` (in evaluation order).
fn build_alert(
    rule: &Rule,
    user_id: &str,
    matched: &[Matched],
    window_start: i64,
    window_end: i64,
    ts: i64,
    details: String,
) -> FraudAlert {
    let ids: Vec<String> = matched.iter().map(|m| m.id.clone()).collect();
    // Currency: the matched events' one currency; when they differ, the last event's, and the
    // total only sums amounts in it.
    let currency = matched
        .iter()
        .rev()
        .find_map(|m| m.amount.map(|(_, c)| c))
        .unwrap_or_default();
    let total = matched
        .iter()
        .filter_map(|m| m.amount)
        .filter(|(_, c)| *c == currency)
        .try_fold(Money::ZERO, |sum, (a, _)| sum.checked_add(a))
        .unwrap_or(Money::ZERO);
    FraudAlert {
        alert_id: FraudAlert::deterministic_id(&rule.name, user_id, &ids, window_start),
        rule: rule.name.clone(),
        user_id: user_id.to_owned(),
        order_ids: ids,
        window_start,
        window_end,
        ts,
        severity: rule.severity,
        total_amount: total,
        currency,
        details: Some(details),
    }
}

#[cfg(test)]
mod tests;
