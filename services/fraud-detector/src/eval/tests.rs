//! Table-driven tests of the matcher at the rule boundaries.

use super::*;
use crate::rules::{built_in_rules, parse_rules};

const S: i64 = 1_000;
const MIN: i64 = 60 * S;
const T0: i64 = 1_700_000_000_000;
/// The runtime's default bounded out-of-orderness.
const BOUND: i64 = 30 * S;

fn order_with(id: &str, at: i64, amount: &str, currency: Currency, status: OrderStatus) -> Event {
    Event {
        ts: T0 + at,
        id: id.into(),
        event_id: format!("e-{id}-{}", status.as_str()),
        body: Body::Order {
            status,
            amount: amount.parse().expect("test amount"),
            currency,
            categories: vec![],
        },
    }
}

fn order(id: &str, at: i64, amount: &str) -> Event {
    order_with(id, at, amount, Currency::TRY, OrderStatus::Placed)
}

fn click(id: &str, at: i64, event_type: ClickEventType) -> Event {
    Event {
        ts: T0 + at,
        id: id.into(),
        event_id: id.into(),
        body: Body::Click {
            event_type,
            price: None,
            category: None,
        },
    }
}

/// What the processor does for one partition holding one user: each arrival is late if
/// `ts <= watermark`, else pending; the watermark then moves to `max - BOUND - 1` and the user
/// advances; at the end the watermark passes everything. Returns (rule, ids) of the alerts and
/// the ids of late events.
fn simulate(rules: &[Rule], arrivals: &[Event]) -> (Vec<(String, Vec<String>)>, Vec<String>) {
    let mut state = UserState::default();
    let mut watermark = i64::MIN;
    let mut max = i64::MIN;
    let mut alerts = Vec::new();
    let mut late = Vec::new();
    for event in arrivals {
        if event.ts <= watermark {
            late.push(event.id.clone());
            continue;
        }
        state.insert(event.clone());
        max = max.max(event.ts);
        watermark = watermark.max(max - BOUND - 1);
        alerts.extend(state.advance(rules, "u1", watermark).alerts);
    }
    alerts.extend(state.advance(rules, "u1", i64::MAX).alerts);
    for alert in &alerts {
        assert_eq!(alert.alert_id, alert.expected_id());
    }
    let alerts = alerts.into_iter().map(|a| (a.rule, a.order_ids)).collect();
    (alerts, late)
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn alert(rule: &str, list: &[&str]) -> (String, Vec<String>) {
    (rule.to_owned(), ids(list))
}

struct Case {
    name: &'static str,
    arrivals: Vec<Event>,
    alerts: Vec<(String, Vec<String>)>,
    late: Vec<&'static str>,
}

fn check(rules: &[Rule], cases: Vec<Case>) {
    for case in cases {
        let (alerts, late) = simulate(rules, &case.arrivals);
        assert_eq!(alerts, case.alerts, "{}", case.name);
        assert_eq!(late, ids(&case.late), "{}: late", case.name);
        // Same alerts when everything is evaluated at once, in any arrival order.
        let on_time: Vec<Event> = case
            .arrivals
            .iter()
            .filter(|e| !case.late.contains(&e.id.as_str()))
            .cloned()
            .collect();
        let mut reversed = UserState::default();
        for e in on_time.iter().rev() {
            reversed.insert(e.clone());
        }
        let at_once: Vec<(String, Vec<String>)> = reversed
            .advance(rules, "u1", i64::MAX)
            .alerts
            .into_iter()
            .map(|a| (a.rule, a.order_ids))
            .collect();
        let mut sorted_a = at_once.clone();
        let mut sorted_b = case.alerts.clone();
        sorted_a.sort();
        sorted_b.sort();
        assert_eq!(sorted_a, sorted_b, "{}: evaluated at once", case.name);
    }
}

fn rule(name: &str) -> Vec<Rule> {
    built_in_rules()
        .into_iter()
        .filter(|r| r.name == name)
        .collect()
}

#[test]
fn rapid_orders_window_boundaries() {
    check(
        &rule("RAPID_ORDERS"),
        vec![
            Case {
                name: "three orders, the last exactly 5 min after the first",
                arrivals: vec![
                    order("a", 0, "10"),
                    order("b", 150 * S, "10"),
                    order("c", 5 * MIN, "10"),
                ],
                alerts: vec![alert("RAPID_ORDERS", &["a", "b", "c"])],
                late: vec![],
            },
            Case {
                name: "the third 5 min + 1 ms after the first",
                arrivals: vec![
                    order("a", 0, "10"),
                    order("b", 150 * S, "10"),
                    order("c", 5 * MIN + 1, "10"),
                ],
                alerts: vec![],
                late: vec![],
            },
            Case {
                name: "two orders only",
                arrivals: vec![order("a", 0, "10"), order("b", S, "10")],
                alerts: vec![],
                late: vec![],
            },
            Case {
                name: "every further order in the window alerts again, listing all",
                arrivals: vec![
                    order("a", 0, "10"),
                    order("b", MIN, "10"),
                    order("c", 2 * MIN, "10"),
                    order("d", 3 * MIN, "10"),
                    order("e", 7 * MIN + 1, "10"),
                ],
                alerts: vec![
                    alert("RAPID_ORDERS", &["a", "b", "c"]),
                    alert("RAPID_ORDERS", &["a", "b", "c", "d"]),
                    // at 7m+1ms the window [2m+1ms, 7m+1ms] holds d, e only
                ],
                late: vec![],
            },
            Case {
                name: "paid, cancelled and refunded events are not placed orders",
                arrivals: vec![
                    order("a", 0, "10"),
                    order_with("a", S, "10", Currency::TRY, OrderStatus::Paid),
                    order_with("a", 2 * S, "10", Currency::TRY, OrderStatus::Cancelled),
                    order_with("a", 3 * S, "10", Currency::TRY, OrderStatus::Refunded),
                    order("b", 4 * S, "10"),
                ],
                alerts: vec![],
                late: vec![],
            },
            Case {
                name: "same event time: order id breaks the tie",
                arrivals: vec![
                    order("o-c", 0, "10"),
                    order("o-b", 0, "10"),
                    order("o-a", 0, "10"),
                ],
                alerts: vec![alert("RAPID_ORDERS", &["o-a", "o-b", "o-c"])],
                late: vec![],
            },
        ],
    );
}

#[test]
fn out_of_order_and_late_events() {
    check(
        &rule("RAPID_ORDERS"),
        vec![
            Case {
                name: "out of order within the bound: evaluated in event-time order",
                // 60 s then 40 s, 50 s: the watermark after 60 s is 29.999 s
                arrivals: vec![
                    order("c", 60 * S, "10"),
                    order("a", 40 * S, "10"),
                    order("b", 50 * S, "10"),
                ],
                alerts: vec![alert("RAPID_ORDERS", &["a", "b", "c"])],
                late: vec![],
            },
            Case {
                name: "an event at the watermark is late and not evaluated",
                // watermark after 100 s: 69.999 s
                arrivals: vec![
                    order("a", 90 * S, "10"),
                    order("b", 100 * S, "10"),
                    order("late", 70 * S - 1, "10"),
                    order("c", 70 * S, "10"),
                ],
                alerts: vec![alert("RAPID_ORDERS", &["c", "a", "b"])],
                late: vec!["late"],
            },
            Case {
                name: "a duplicate event id is counted once",
                arrivals: vec![
                    order("a", 0, "10"),
                    order("a", 0, "10"),
                    order("b", S, "10"),
                ],
                alerts: vec![],
                late: vec![],
            },
        ],
    );
}

#[test]
fn high_value_first_order() {
    let gap = 40 * 24 * 60 * MIN;
    check(
        &rule("HIGH_VALUE_FIRST_ORDER"),
        vec![
            Case {
                name: "exactly 5000 does not fire",
                arrivals: vec![order("a", 0, "5000.00")],
                alerts: vec![],
                late: vec![],
            },
            Case {
                name: "5000.01 fires",
                arrivals: vec![order("a", 0, "5000.01")],
                alerts: vec![alert("HIGH_VALUE_FIRST_ORDER", &["a"])],
                late: vec![],
            },
            Case {
                name: "only the first order ever, even 40 days later",
                arrivals: vec![order("a", 0, "100"), order("b", gap, "9000")],
                alerts: vec![],
                late: vec![],
            },
            Case {
                name: "the first placed order after 40 days of only clicks",
                arrivals: vec![
                    click("c1", 0, ClickEventType::PageView),
                    order("a", gap, "9000"),
                    order("b", gap + S, "9000"),
                ],
                alerts: vec![alert("HIGH_VALUE_FIRST_ORDER", &["a"])],
                late: vec![],
            },
            Case {
                name: "a paid event is not the first placed order",
                arrivals: vec![
                    order_with("a", 0, "9000", Currency::TRY, OrderStatus::Paid),
                    order("b", S, "9000"),
                ],
                alerts: vec![alert("HIGH_VALUE_FIRST_ORDER", &["b"])],
                late: vec![],
            },
            Case {
                name: "a first order in EUR never passes the TRY threshold, and stays first",
                arrivals: vec![
                    order_with("a", 0, "9000", Currency::EUR, OrderStatus::Placed),
                    order("b", S, "9000"),
                ],
                alerts: vec![],
                late: vec![],
            },
            Case {
                name: "an out-of-order earlier order is the first",
                arrivals: vec![order("b", 20 * S, "9000"), order("a", 0, "10")],
                alerts: vec![],
                late: vec![],
            },
        ],
    );
}

#[test]
fn high_value_burst() {
    check(
        &built_in_rules(),
        vec![
            Case {
                name: "three orders above 5000 in 5 min: rapid, first and burst",
                arrivals: vec![
                    order("a", 0, "6000"),
                    order("b", MIN, "7000"),
                    order("c", 5 * MIN, "5000.01"),
                ],
                alerts: vec![
                    alert("HIGH_VALUE_FIRST_ORDER", &["a"]),
                    alert("RAPID_ORDERS", &["a", "b", "c"]),
                    alert("HIGH_VALUE_BURST", &["a", "b", "c"]),
                ],
                late: vec![],
            },
            Case {
                name: "one of them exactly 5000: rapid only",
                arrivals: vec![
                    order("a", 0, "6000"),
                    order("b", MIN, "5000"),
                    order("c", 2 * MIN, "7000"),
                ],
                alerts: vec![
                    alert("HIGH_VALUE_FIRST_ORDER", &["a"]),
                    alert("RAPID_ORDERS", &["a", "b", "c"]),
                ],
                late: vec![],
            },
            Case {
                name: "a USD order above 5000 is not part of a TRY burst",
                arrivals: vec![
                    order("a", 0, "100"),
                    order("b", MIN, "7000"),
                    order_with("c", 2 * MIN, "7000", Currency::USD, OrderStatus::Placed),
                    order("d", 3 * MIN, "7000"),
                ],
                alerts: vec![
                    alert("RAPID_ORDERS", &["a", "b", "c"]),
                    alert("RAPID_ORDERS", &["a", "b", "c", "d"]),
                ],
                late: vec![],
            },
        ],
    );
}

fn example_rules(file: &str) -> Vec<Rule> {
    let path = format!("{}/../../examples/rules/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("example rule file");
    parse_rules(&text, &path).expect("valid example rules")
}

#[test]
fn funnel_sequence() {
    use ClickEventType::*;
    check(
        &example_rules("funnel.yaml"),
        vec![
            Case {
                name: "view, cart, checkout within 10 min (the last exactly at 10 min)",
                arrivals: vec![
                    click("v", 0, ProductView),
                    click("s", MIN, Search),
                    click("c", 2 * MIN, AddToCart),
                    click("k", 10 * MIN, CheckoutStart),
                ],
                alerts: vec![alert("CHECKOUT_FUNNEL", &["v", "c", "k"])],
                late: vec![],
            },
            Case {
                name: "checkout 10 min + 1 ms after the view",
                arrivals: vec![
                    click("v", 0, ProductView),
                    click("c", 2 * MIN, AddToCart),
                    click("k", 10 * MIN + 1, CheckoutStart),
                ],
                alerts: vec![],
                late: vec![],
            },
            Case {
                name: "steps out of order do not match",
                arrivals: vec![
                    click("c", 0, AddToCart),
                    click("v", MIN, ProductView),
                    click("k", 2 * MIN, CheckoutStart),
                ],
                alerts: vec![],
                late: vec![],
            },
            Case {
                name: "several views: the earliest run alerts once (skip past last event)",
                arrivals: vec![
                    click("v1", 0, ProductView),
                    click("v2", MIN, ProductView),
                    click("c", 2 * MIN, AddToCart),
                    click("k", 3 * MIN, CheckoutStart),
                    click("k2", 4 * MIN, CheckoutStart),
                ],
                alerts: vec![alert("CHECKOUT_FUNNEL", &["v1", "c", "k"])],
                late: vec![],
            },
            Case {
                name: "the earliest run expired, a later one completes",
                arrivals: vec![
                    click("v1", 0, ProductView),
                    click("v2", 5 * MIN, ProductView),
                    click("c", 9 * MIN, AddToCart),
                    click("k", 11 * MIN, CheckoutStart),
                ],
                alerts: vec![alert("CHECKOUT_FUNNEL", &["v2", "c", "k"])],
                late: vec![],
            },
        ],
    );
}

#[test]
fn cart_abandonment_absence() {
    use ClickEventType::*;
    check(
        &example_rules("cart-abandonment.yaml"),
        vec![
            Case {
                name: "checkout exactly 30 min after the cart add: not abandoned",
                arrivals: vec![
                    click("c", 0, AddToCart),
                    click("k", 30 * MIN, CheckoutStart),
                ],
                alerts: vec![],
                late: vec![],
            },
            Case {
                name: "checkout 30 min + 1 ms after: abandoned",
                arrivals: vec![
                    click("c", 0, AddToCart),
                    click("k", 30 * MIN + 1, CheckoutStart),
                ],
                alerts: vec![alert("CART_ABANDONMENT", &["c"])],
                late: vec![],
            },
            Case {
                name: "each cart add not followed by a checkout alerts",
                arrivals: vec![
                    click("c1", 0, AddToCart),
                    click("c2", MIN, AddToCart),
                    click("k", 30 * MIN + S, CheckoutStart),
                    click("c3", 40 * MIN, AddToCart),
                ],
                alerts: vec![
                    alert("CART_ABANDONMENT", &["c1"]),
                    alert("CART_ABANDONMENT", &["c3"]),
                ],
                late: vec![],
            },
            Case {
                name: "a checkout before the add does not count",
                arrivals: vec![click("k", 0, CheckoutStart), click("c", MIN, AddToCart)],
                alerts: vec![alert("CART_ABANDONMENT", &["c"])],
                late: vec![],
            },
        ],
    );
}

#[test]
fn absence_fires_only_when_the_watermark_passes_the_deadline() {
    let rules = example_rules("cart-abandonment.yaml");
    let mut state = UserState::default();
    state.insert(click("c", 0, ClickEventType::AddToCart));
    let first = state.advance(&rules, "u1", T0);
    assert!(first.alerts.is_empty());
    assert_eq!(first.evaluated_ts, vec![T0]);
    assert_eq!(first.deadlines, vec![T0 + 30 * MIN]);
    assert!(
        state
            .advance(&rules, "u1", T0 + 30 * MIN - 1)
            .alerts
            .is_empty()
    );
    let fired = state.advance(&rules, "u1", T0 + 30 * MIN);
    assert_eq!(fired.alerts.len(), 1);
    let a = &fired.alerts[0];
    assert_eq!(
        (a.window_start, a.window_end, a.ts),
        (T0, T0 + 30 * MIN, T0 + 30 * MIN)
    );
    assert!(fired.deadlines.is_empty());
    assert!(state.advance(&rules, "u1", i64::MAX).alerts.is_empty());
}

#[test]
fn bounce_is_a_lone_session_start() {
    use ClickEventType::*;
    check(
        &example_rules("bounce.yaml"),
        vec![
            Case {
                name: "one page view, then nothing for 30 min",
                arrivals: vec![click("p", 0, PageView), click("q", 30 * MIN + 1, PageView)],
                // q starts a new session too (gap > 30 min) and is also alone
                alerts: vec![alert("BOUNCE", &["p"]), alert("BOUNCE", &["q"])],
                late: vec![],
            },
            Case {
                name: "a second event within 30 min: no bounce",
                arrivals: vec![click("p", 0, PageView), click("s", 30 * MIN, Search)],
                alerts: vec![],
                late: vec![],
            },
            Case {
                name: "a page view inside a session is not a session start",
                arrivals: vec![
                    click("p", 0, PageView),
                    click("s", MIN, Search),
                    click("p2", 2 * MIN, PageView),
                ],
                alerts: vec![],
                late: vec![],
            },
        ],
    );
}

#[test]
fn alert_fields() {
    let mut state = UserState::default();
    for e in [
        order("a", 0, "6000.50"),
        order("b", MIN, "7000"),
        order("c", 2 * MIN, "100"),
    ] {
        state.insert(e);
    }
    let out = state.advance(&rule("RAPID_ORDERS"), "u-9", i64::MAX);
    assert_eq!(out.alerts.len(), 1);
    let a = &out.alerts[0];
    assert_eq!(a.user_id, "u-9");
    assert_eq!(a.severity, trendstream_events::Severity::Medium);
    assert_eq!(
        (a.window_start, a.window_end, a.ts),
        (T0, T0 + 2 * MIN, T0 + 2 * MIN)
    );
    assert_eq!(a.total_amount.to_string(), "13100.50");
    assert_eq!(a.currency, Currency::TRY);
    assert_eq!(
        a.alert_id,
        FraudAlert::deterministic_id("RAPID_ORDERS", "u-9", &["a", "b", "c"], T0)
    );
    assert_eq!(a.details.as_deref(), Some("3 matching events within 5m"));
    // State round-trips through JSON (it lives in RocksDB and the changelog).
    let json = serde_json::to_string(&state).unwrap();
    assert_eq!(serde_json::from_str::<UserState>(&json).unwrap(), state);
}

#[test]
fn filter_conditions() {
    let priced = |price: Option<&str>, category: Option<&str>| Event {
        body: Body::Click {
            event_type: ClickEventType::ProductView,
            price: price.map(|p| p.parse().expect("price")),
            category: category.map(str::to_owned),
        },
        ..click("c", 0, ClickEventType::ProductView)
    };
    let mut in_category = order("o", 0, "100");
    if let Body::Order { categories, .. } = &mut in_category.body {
        *categories = vec!["books".into(), "electronics".into()];
    }
    // (event, conditions, previous event time, matches)
    let cases: Vec<(&str, Event, &str, Option<i64>, bool)> = vec![
        (
            "order in category",
            in_category.clone(),
            "event: order, where: {category: [electronics]}",
            None,
            true,
        ),
        (
            "order not in category",
            order("o", 0, "1"),
            "event: order, where: {category: [electronics]}",
            None,
            false,
        ),
        (
            "click in category",
            priced(None, Some("electronics")),
            "event: click, where: {category: [electronics, toys]}",
            None,
            true,
        ),
        (
            "click without category",
            priced(None, None),
            "event: click, where: {category: [electronics]}",
            None,
            false,
        ),
        (
            "click price above (TRY)",
            priced(Some("10.01"), None),
            "event: click, where: {amountAbove: \"10\"}",
            None,
            true,
        ),
        (
            "click price at bound",
            priced(Some("10"), None),
            "event: click, where: {amountAbove: \"10\"}",
            None,
            false,
        ),
        (
            "click without price never matches an amount",
            priced(None, None),
            "event: click, where: {amountAtMost: \"10\"}",
            None,
            false,
        ),
        (
            "click priced in TRY never matches EUR",
            priced(Some("1"), None),
            "event: click, where: {currency: EUR}",
            None,
            false,
        ),
        (
            "any: an order",
            order("o", 0, "1"),
            "event: any",
            None,
            true,
        ),
        ("any: a click", priced(None, None), "event: any", None, true),
        (
            "click filter: not an order",
            order("o", 0, "1"),
            "event: click",
            None,
            false,
        ),
        (
            "amount range inclusive",
            order("o", 0, "20"),
            "event: order, where: {amountAtLeast: \"10\", amountAtMost: \"20\"}",
            None,
            true,
        ),
        (
            "amount range exclusive",
            order("o", 0, "20"),
            "event: order, where: {amountAtLeast: \"10\", amountBelow: \"20\"}",
            None,
            false,
        ),
        (
            "after gap: no previous event",
            order("o", 0, "1"),
            "event: order, where: {afterGap: 30m}",
            None,
            true,
        ),
        (
            "after gap: exactly 30 min",
            order("o", 30 * MIN, "1"),
            "event: order, where: {afterGap: 30m}",
            Some(T0),
            false,
        ),
        (
            "after gap: 30 min + 1 ms",
            order("o", 30 * MIN + 1, "1"),
            "event: order, where: {afterGap: 30m}",
            Some(T0),
            true,
        ),
    ];
    for (name, event, conditions, previous, expected) in cases {
        let text = format!("rules: [{{name: X, within: 1m, count: {{{conditions}, atLeast: 1}}}}]");
        let rules = parse_rules(&text, "t").unwrap_or_else(|e| panic!("{name}: {e}"));
        let RuleKind::Count { filter, .. } = &rules[0].kind else {
            panic!("{name}: count rule expected");
        };
        assert_eq!(matches(filter, &event, previous), expected, "{name}");
    }
}

/// Brute force over a user's on-time events: the built-in rules as docs/processors.md states them.
fn brute_force(events: &[Event]) -> Vec<(String, Vec<String>)> {
    let mut sorted = events.to_vec();
    sorted.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    let placed: Vec<&Event> = sorted
        .iter()
        .filter(|e| {
            matches!(
                e.body,
                Body::Order {
                    status: OrderStatus::Placed,
                    ..
                }
            )
        })
        .collect();
    let high = |e: &&Event| matches!(e.body, Body::Order { amount, currency: Currency::TRY, .. } if amount > Money::new(5000.into()));
    let windows = |rule: &str, list: &[&Event]| -> Vec<(String, Vec<String>)> {
        (0..list.len())
            .filter_map(|i| {
                let ids: Vec<String> = list[..=i]
                    .iter()
                    .filter(|e| e.ts >= list[i].ts - 5 * MIN)
                    .map(|e| e.id.clone())
                    .collect();
                (ids.len() >= 3).then(|| (rule.to_owned(), ids))
            })
            .collect()
    };
    let mut out = windows("RAPID_ORDERS", &placed);
    if let Some(first) = placed.first().filter(|e| high(e)) {
        out.push(("HIGH_VALUE_FIRST_ORDER".into(), vec![first.id.clone()]));
    }
    let burst: Vec<&Event> = placed.iter().copied().filter(|e| high(e)).collect();
    out.extend(windows("HIGH_VALUE_BURST", &burst));
    out.sort();
    out
}

#[test]
fn random_streams_match_the_brute_force() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let amounts = ["100", "5000", "5000.01", "9000"];
    let (mut alerts, mut lates) = (BTreeMap::<String, usize>::new(), 0);
    for round in 0..300 {
        let mut at = 0;
        let mut events = Vec::new();
        for i in 0..(5 + next(15)) {
            at += [0, S, 30 * S, 2 * MIN, 5 * MIN, 5 * MIN + 1][next(6) as usize];
            let status = if next(5) == 0 {
                OrderStatus::Paid
            } else {
                OrderStatus::Placed
            };
            let currency = if next(8) == 0 {
                Currency::EUR
            } else {
                Currency::TRY
            };
            let amount = amounts[next(4) as usize];
            events.push(order_with(
                &format!("o{:02}", next(30)),
                at,
                amount,
                currency,
                status,
            ));
            let last = events.len() - 1;
            events[last].event_id = format!("e{i}");
        }
        // Arrival order: event time with some events delayed by up to 90 s (out of order, some late).
        let mut arrivals = events.clone();
        arrivals.sort_by_cached_key(|e| e.ts + if next(3) == 0 { next(90) as i64 * S } else { 0 });
        let (mut got, late) = simulate(&built_in_rules(), &arrivals);
        let on_time: Vec<Event> = arrivals
            .iter()
            .enumerate()
            .filter(|(i, e)| {
                // `simulate` reports late events by id; ids repeat, so recompute lateness.
                let max = arrivals[..*i]
                    .iter()
                    .map(|p| p.ts)
                    .max()
                    .unwrap_or(i64::MIN);
                e.ts > max.saturating_sub(BOUND + 1)
            })
            .map(|(_, e)| e.clone())
            .collect();
        assert_eq!(arrivals.len() - on_time.len(), late.len(), "round {round}");
        got.sort();
        assert_eq!(got, brute_force(&on_time), "round {round}: {arrivals:#?}");
        lates += late.len();
        for (rule, _) in got {
            *alerts.entry(rule).or_default() += 1;
        }
    }
    // The streams exercise every rule and lateness.
    println!("{lates} late events, alerts {alerts:?}");
    assert!(lates > 20, "{lates} late events");
    for rule in ["RAPID_ORDERS", "HIGH_VALUE_FIRST_ORDER", "HIGH_VALUE_BURST"] {
        assert!(alerts.get(rule).is_some_and(|n| *n > 20), "{alerts:?}");
    }
}
