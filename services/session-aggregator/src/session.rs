//! One session's running aggregate: what its clicks add up to, and the summary it closes with.
//!
//! The aggregate is defined as a function of the session's clicks, independent of the order in
//! which they arrived except where event times tie:
//! - counts are sums;
//! - `first_ts`/`last_ts` are the smallest and largest event time;
//! - `last_category` and `device` come from the click with the largest event time that names
//!   one (on a tie, the later arrival wins);
//! - `categories` are the distinct categories ordered by the smallest event time at which each
//!   occurs (on a tie, the earlier arrival first).
//!
//! [`SessionAggregate::merge`] of two sessions gives the same aggregate as folding all their
//! clicks one by one in arrival order, because sessions that merge never share an event time
//! (two open sessions are more than a gap apart).

use serde::{Deserialize, Serialize};
use trendstream_events::{ClickEvent, ClickEventType, SessionSummary};
use trendstream_runtime::window::Window;

/// A value together with the event time it was seen at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamped {
    pub ts: i64,
    pub value: String,
}

/// The running aggregate of one open session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionAggregate {
    pub first_ts: i64,
    pub last_ts: i64,
    pub event_count: u64,
    pub page_views: u64,
    pub product_views: u64,
    pub searches: u64,
    pub cart_adds: u64,
    pub cart_removes: u64,
    pub checkouts: u64,
    /// Category of the latest click naming one.
    pub last_category: Option<Stamped>,
    /// Device of the latest click naming one.
    pub device: Option<Stamped>,
    /// Distinct categories with the earliest event time each was seen at, in that order.
    pub categories: Vec<Stamped>,
}

/// Replaces `slot` when `ts` is at least as late as what it holds (a tie goes to the newcomer).
pub(crate) fn keep_latest(slot: &mut Option<Stamped>, ts: i64, value: Option<&str>) {
    if let Some(value) = value
        && slot.as_ref().is_none_or(|held| ts >= held.ts)
    {
        *slot = Some(Stamped {
            ts,
            value: value.to_owned(),
        });
    }
}

/// Records that `category` was seen at `ts`, keeping `categories` ordered by first-seen time;
/// an entry that ties with existing ones goes after them (they arrived first).
fn note_category(categories: &mut Vec<Stamped>, ts: i64, category: &str) {
    if let Some(index) = categories.iter().position(|c| c.value == category) {
        if categories[index].ts <= ts {
            return;
        }
        categories.remove(index);
    }
    let at = categories.partition_point(|c| c.ts <= ts);
    categories.insert(
        at,
        Stamped {
            ts,
            value: category.to_owned(),
        },
    );
}

impl SessionAggregate {
    /// The aggregate of a session holding only `click`.
    pub fn new(click: &ClickEvent) -> Self {
        let mut aggregate = Self {
            first_ts: click.ts,
            last_ts: click.ts,
            event_count: 0,
            page_views: 0,
            product_views: 0,
            searches: 0,
            cart_adds: 0,
            cart_removes: 0,
            checkouts: 0,
            last_category: None,
            device: None,
            categories: Vec::new(),
        };
        aggregate.add(click);
        aggregate
    }

    /// Folds one more click in.
    pub fn add(&mut self, click: &ClickEvent) {
        self.first_ts = self.first_ts.min(click.ts);
        self.last_ts = self.last_ts.max(click.ts);
        self.event_count += 1;
        let counter = match click.event_type {
            ClickEventType::PageView => &mut self.page_views,
            ClickEventType::ProductView => &mut self.product_views,
            ClickEventType::Search => &mut self.searches,
            ClickEventType::AddToCart => &mut self.cart_adds,
            ClickEventType::RemoveFromCart => &mut self.cart_removes,
            ClickEventType::CheckoutStart => &mut self.checkouts,
        };
        *counter += 1;
        keep_latest(&mut self.last_category, click.ts, click.category.as_deref());
        keep_latest(&mut self.device, click.ts, click.device.as_deref());
        if let Some(category) = click.category.as_deref() {
            note_category(&mut self.categories, click.ts, category);
        }
    }

    /// Folds another session's aggregate in (`other` is taken as the later arrival on ties).
    pub fn merge(&mut self, other: &SessionAggregate) {
        self.first_ts = self.first_ts.min(other.first_ts);
        self.last_ts = self.last_ts.max(other.last_ts);
        self.event_count += other.event_count;
        self.page_views += other.page_views;
        self.product_views += other.product_views;
        self.searches += other.searches;
        self.cart_adds += other.cart_adds;
        self.cart_removes += other.cart_removes;
        self.checkouts += other.checkouts;
        if let Some(c) = &other.last_category {
            keep_latest(&mut self.last_category, c.ts, Some(&c.value));
        }
        if let Some(d) = &other.device {
            keep_latest(&mut self.device, d.ts, Some(&d.value));
        }
        for c in &other.categories {
            note_category(&mut self.categories, c.ts, &c.value);
        }
    }

    /// The session window the aggregate spans: `[first_ts, last_ts + gap)`.
    pub fn window(&self, gap: i64) -> Window {
        Window::new(self.first_ts, self.last_ts.saturating_add(gap))
    }

    /// `last_ts - first_ts`.
    pub fn duration_ms(&self) -> i64 {
        self.last_ts - self.first_ts
    }

    /// Page and product views.
    pub fn views(&self) -> u64 {
        self.page_views + self.product_views
    }

    /// The summary a closing session emits.
    pub fn summary(&self, user_id: &str) -> SessionSummary {
        SessionSummary {
            session_id: SessionSummary::deterministic_id(user_id, self.first_ts),
            user_id: user_id.to_owned(),
            start_ts: self.first_ts,
            end_ts: self.last_ts,
            duration_ms: self.duration_ms(),
            event_count: self.event_count,
            page_views: self.page_views,
            product_views: self.product_views,
            searches: self.searches,
            cart_adds: self.cart_adds,
            cart_removes: self.cart_removes,
            checkouts: self.checkouts,
            last_category: self.last_category.as_ref().map(|c| c.value.clone()),
            categories: self.categories.iter().map(|c| c.value.clone()).collect(),
            device: self.device.as_ref().map(|d| d.value.clone()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A click for tests: `kind` is the wire name of the event type.
    pub(crate) fn click(
        user: &str,
        ts: i64,
        kind: &str,
        category: Option<&str>,
        device: Option<&str>,
    ) -> ClickEvent {
        let event_type: ClickEventType =
            serde_json::from_value(serde_json::Value::String(kind.to_owned()))
                .unwrap_or_else(|e| panic!("event type {kind}: {e}"));
        ClickEvent {
            event_id: format!("{user}-{ts}-{kind}"),
            user_id: user.to_owned(),
            session_id: None,
            event_type,
            product_id: None,
            category: category.map(str::to_owned),
            price: None,
            device: device.map(str::to_owned),
            ts,
        }
    }

    fn fold(clicks: &[ClickEvent]) -> SessionAggregate {
        let mut aggregate = SessionAggregate::new(&clicks[0]);
        for c in &clicks[1..] {
            aggregate.add(c);
        }
        aggregate
    }

    #[test]
    fn fold_counts_and_orders() {
        struct Case {
            name: &'static str,
            clicks: Vec<ClickEvent>,
            last_category: Option<&'static str>,
            categories: Vec<&'static str>,
            device: Option<&'static str>,
            span: (i64, i64),
        }
        let cases = [
            Case {
                name: "in order",
                clicks: vec![
                    click("u", 10, "page_view", None, Some("web")),
                    click("u", 20, "product_view", Some("books"), None),
                    click("u", 30, "add_to_cart", Some("toys"), Some("ios")),
                ],
                last_category: Some("toys"),
                categories: vec!["books", "toys"],
                device: Some("ios"),
                span: (10, 30),
            },
            Case {
                name: "an older click does not replace the latest category or device",
                clicks: vec![
                    click("u", 30, "product_view", Some("toys"), Some("ios")),
                    click("u", 20, "product_view", Some("books"), Some("web")),
                ],
                last_category: Some("toys"),
                categories: vec!["books", "toys"],
                device: Some("ios"),
                span: (20, 30),
            },
            Case {
                name: "equal times: later arrival is the last, earlier arrival first-seen",
                clicks: vec![
                    click("u", 20, "product_view", Some("toys"), None),
                    click("u", 20, "product_view", Some("books"), None),
                ],
                last_category: Some("books"),
                categories: vec!["toys", "books"],
                device: None,
                span: (20, 20),
            },
            Case {
                name: "a category seen earlier out of order moves forward",
                clicks: vec![
                    click("u", 10, "search", Some("a"), None),
                    click("u", 30, "search", Some("b"), None),
                    click("u", 40, "search", Some("c"), None),
                    click("u", 5, "search", Some("c"), None),
                ],
                last_category: Some("c"),
                categories: vec!["c", "a", "b"],
                device: None,
                span: (5, 40),
            },
        ];
        for case in cases {
            let a = fold(&case.clicks);
            assert_eq!(
                a.last_category.as_ref().map(|c| c.value.as_str()),
                case.last_category,
                "{}",
                case.name
            );
            let cats: Vec<&str> = a.categories.iter().map(|c| c.value.as_str()).collect();
            assert_eq!(cats, case.categories, "{}", case.name);
            assert_eq!(
                a.device.as_ref().map(|d| d.value.as_str()),
                case.device,
                "{}",
                case.name
            );
            assert_eq!((a.first_ts, a.last_ts), case.span, "{}", case.name);
            assert_eq!(a.event_count, case.clicks.len() as u64, "{}", case.name);
        }
    }

    #[test]
    fn merging_equals_folding_everything() {
        let early = vec![
            click("u", 100, "page_view", Some("a"), Some("web")),
            click("u", 90, "add_to_cart", Some("b"), None),
        ];
        let late = vec![
            click("u", 5_000, "search", Some("b"), None),
            click("u", 4_000, "checkout_start", Some("c"), Some("ios")),
        ];
        let mut merged = fold(&early);
        merged.merge(&fold(&late));
        let all: Vec<ClickEvent> = early.iter().chain(&late).cloned().collect();
        assert_eq!(merged, fold(&all));
        let summary = merged.summary("u");
        assert_eq!(
            summary.session_id,
            SessionSummary::deterministic_id("u", 90)
        );
        assert_eq!((summary.start_ts, summary.end_ts), (90, 5_000));
        assert_eq!(summary.duration_ms, 4_910);
        assert_eq!(
            (
                summary.event_count,
                summary.page_views,
                summary.cart_adds,
                summary.searches,
                summary.checkouts
            ),
            (4, 1, 1, 1, 1)
        );
        assert_eq!(summary.categories, ["b", "a", "c"]);
        assert_eq!(summary.last_category.as_deref(), Some("b"));
        assert_eq!(summary.device.as_deref(), Some("ios"));
        assert_eq!(merged.window(1_000), Window::new(90, 6_000));
    }
}
