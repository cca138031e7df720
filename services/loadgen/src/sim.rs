//! The behaviour model: users, their sessions of clicks, their orders and what happens to the
//! orders later, plus planted fraud patterns. Pure and seeded; yields events in event-time order
//! (disorder, poison pills and the record limit are applied downstream, in [`crate::generator`]).
//!
//! A priority queue of scheduled items keyed by `(event time, sequence number)` drives it: a
//! session start generates the whole session's events (and the next session start) into the
//! queue, so memory is bounded by the number of users, not by the length of the run.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use serde::Serialize;
use trendstream_events::{
    ClickEvent, ClickEventType, Currency, Money, OrderEvent, OrderItem, OrderStatus,
};

use crate::rng::Rng;

const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

/// Category, median price in kuruş, price spread (log-normal sigma).
const CATEGORIES: [(&str, f64, f64); 10] = [
    ("electronics", 250_000.0, 0.9),
    ("fashion", 35_000.0, 0.6),
    ("home", 60_000.0, 0.8),
    ("beauty", 18_000.0, 0.6),
    ("sports", 45_000.0, 0.7),
    ("books", 9_000.0, 0.4),
    ("toys", 25_000.0, 0.6),
    ("grocery", 6_000.0, 0.5),
    ("automotive", 80_000.0, 0.9),
    ("jewelry", 150_000.0, 1.0),
];
/// Categories of the expensive items planted high-value orders buy.
const EXPENSIVE: [usize; 2] = [0, 9];
const PRODUCTS_PER_CATEGORY: usize = 60;
const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];
const DEVICE_WEIGHTS: [u32; 3] = [55, 35, 10];
/// Kuruş per unit of EUR and USD (fixed, so the stream stays a function of the seed).
const EUR_RATE: i64 = 37;
const USD_RATE: i64 = 34;
/// The fraud threshold of the rules (TRY), in kuruş.
const HIGH_VALUE: i64 = 500_000;

/// A product of the simulated catalog.
#[derive(Debug, Clone)]
struct Product {
    id: String,
    category: usize,
    /// Price in kuruş (TRY minor units).
    price: i64,
}

/// The product catalog: a function of the seed only.
#[derive(Debug, Clone)]
struct Catalog {
    products: Vec<Product>,
}

impl Catalog {
    fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed, 1);
        let mut products = Vec::with_capacity(CATEGORIES.len() * PRODUCTS_PER_CATEGORY);
        for (category, &(_, median, sigma)) in CATEGORIES.iter().enumerate() {
            for n in 0..PRODUCTS_PER_CATEGORY {
                // Prices end in .99 or .90 like a shop's, at least 4.99.
                let raw = rng.lognormal(median, sigma).clamp(500.0, 20_000_000.0) as i64;
                let ending = if rng.chance(0.7) { 99 } else { 90 };
                products.push(Product {
                    id: format!("p-{}", 1000 + category * PRODUCTS_PER_CATEGORY + n),
                    category,
                    price: (raw / 100).max(4) * 100 + ending,
                });
            }
        }
        Self { products }
    }

    fn in_category(&self, rng: &mut Rng, category: usize) -> usize {
        category * PRODUCTS_PER_CATEGORY + rng.below(PRODUCTS_PER_CATEGORY as u64) as usize
    }
}

/// A simulated user.
#[derive(Debug, Clone)]
struct User {
    id: String,
    device: usize,
    favourites: [usize; 2],
    /// Scales the pause between sessions (some users come back often, some rarely).
    pace: f64,
    sessions: u32,
}

/// Which planted fraud pattern an event completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FraudPattern {
    /// 3 to 5 orders of one user within 4 minutes (rule: >= 3 in 5 min).
    RapidOrders,
    /// A new user whose first order is above 5000 TRY.
    HighValueFirstOrder,
    /// 3 or 4 orders above 5000 TRY each, within 4 minutes.
    HighValueBurst,
}

/// An event of the model, in event time order.
#[derive(Debug, Clone)]
pub struct SimEvent {
    pub ts: i64,
    /// The user id (the record key).
    pub user: String,
    pub body: Body,
    /// Part of a planted fraud pattern (never made late, so the pattern stays detectable).
    pub planted: bool,
    /// Set on the event that completes a planted pattern.
    pub completes: Option<FraudPattern>,
}

/// The event itself. `event_id` is left empty: ids are given in produce order downstream.
#[derive(Debug, Clone)]
pub enum Body {
    Click(ClickEvent),
    Order(OrderEvent),
}

#[derive(Debug)]
enum Item {
    SessionStart(usize),
    Emit(Box<SimEvent>),
}

#[derive(Debug)]
struct Scheduled {
    at: i64,
    seq: u64,
    item: Item,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest item must come first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Who is clicking: the user, the session hint, the device, and whether it is a planted pattern.
#[derive(Debug, Clone)]
struct Visit {
    user: String,
    session: String,
    device: usize,
    planted: bool,
}

/// Settings of the behaviour model.
#[derive(Debug, Clone, Copy)]
pub struct SimConfig {
    pub seed: u64,
    pub users: u32,
    pub start_ts: i64,
    /// Probability that a session start plants a fraud pattern.
    pub fraud_rate: f64,
}

/// The behaviour model; an endless iterator of events in event-time order.
#[derive(Debug)]
pub struct Simulation {
    config: SimConfig,
    rng: Rng,
    catalog: Catalog,
    users: Vec<User>,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    orders: u64,
    fraudsters: u64,
}

impl Simulation {
    pub fn new(config: SimConfig) -> Self {
        let catalog = Catalog::new(config.seed);
        let mut rng = Rng::new(config.seed, 2);
        let mut sim = Self {
            config,
            rng: Rng::new(config.seed, 3),
            catalog,
            users: Vec::with_capacity(config.users as usize),
            queue: BinaryHeap::with_capacity(config.users as usize * 8),
            seq: 0,
            orders: 0,
            fraudsters: 0,
        };
        for n in 1..=config.users {
            let first = rng.below(CATEGORIES.len() as u64) as usize;
            let second = rng.below(CATEGORIES.len() as u64) as usize;
            sim.users.push(User {
                id: format!("u-{n}"),
                device: rng.weighted(&DEVICE_WEIGHTS),
                favourites: [first, second],
                pace: rng.lognormal(1.0, 0.6),
                sessions: 0,
            });
            // Users arrive over the first 10 minutes.
            let at = config.start_ts + rng.between(0, 10 * MINUTE);
            sim.schedule(at, Item::SessionStart(sim.users.len() - 1));
        }
        sim
    }

    fn schedule(&mut self, at: i64, item: Item) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            item,
        });
    }

    fn emit(&mut self, event: SimEvent) {
        self.schedule(event.ts, Item::Emit(Box::new(event)));
    }

    /// Seconds to minutes between two clicks of a session (median 20 s, at most 5 min).
    fn click_gap(&mut self) -> i64 {
        (self.rng.lognormal(20_000.0, 0.9) as i64).clamp(SECOND, 5 * MINUTE)
    }

    fn start_session(&mut self, u: usize, start: i64) {
        if self.rng.chance(self.config.fraud_rate) {
            let end = match self.rng.below(3) {
                0 => self.order_series(u, start, FraudPattern::RapidOrders),
                1 => {
                    self.high_value_first_order(start);
                    self.normal_session(u, start)
                }
                _ => self.order_series(u, start, FraudPattern::HighValueBurst),
            };
            self.schedule_next_session(u, end);
        } else {
            let end = self.normal_session(u, start);
            self.schedule_next_session(u, end);
        }
    }

    fn schedule_next_session(&mut self, u: usize, end: i64) {
        // More than the 30-minute session gap most of the time; sometimes a short pause that
        // continues the same (gap-defined) session.
        let gap = if self.rng.chance(0.65) {
            30 * MINUTE
                + SECOND
                + (self.rng.exponential(2.0 * HOUR as f64) * self.users[u].pace) as i64
        } else {
            self.rng.between(MINUTE, 25 * MINUTE)
        };
        self.schedule(end + gap, Item::SessionStart(u));
    }

    fn click(
        &mut self,
        visit: &Visit,
        event_type: ClickEventType,
        product: Option<usize>,
        category: Option<usize>,
        ts: i64,
    ) {
        let Visit {
            user,
            session,
            device,
            planted,
        } = visit;
        let (device, planted) = (*device, *planted);
        let product = product.map(|p| &self.catalog.products[p]);
        let category = product.map(|p| p.category).or(category);
        let event = ClickEvent {
            event_id: String::new(),
            user_id: user.clone(),
            session_id: Some(session.clone()),
            event_type,
            product_id: product.map(|p| p.id.clone()),
            category: category.map(|c| CATEGORIES[c].0.to_owned()),
            price: product.map(|p| minor(p.price)),
            device: Some(DEVICES[device].to_owned()),
            ts,
        };
        self.emit(SimEvent {
            ts,
            user: user.clone(),
            body: Body::Click(event),
            planted,
            completes: None,
        });
    }

    fn pick_product(&mut self, u: usize) -> usize {
        let category = if self.rng.chance(0.7) {
            *self.rng.pick(&self.users[u].favourites)
        } else {
            self.rng.below(CATEGORIES.len() as u64) as usize
        };
        self.catalog.in_category(&mut self.rng, category)
    }

    /// A browsing session; returns the time of its last event.
    fn normal_session(&mut self, u: usize, start: i64) -> i64 {
        let user = self.users[u].id.clone();
        let session = format!("s-{}-{}", user, self.users[u].sessions);
        self.users[u].sessions += 1;
        let device = if self.rng.chance(0.1) {
            self.rng.weighted(&DEVICE_WEIGHTS)
        } else {
            self.users[u].device
        };
        let clicks = 2 + self.rng.geometric(6.0).min(38);
        let mut t = start;
        let mut cart: Vec<(usize, u32)> = Vec::new();
        let mut viewed: Option<usize> = None;
        let landing = self.rng.chance(0.5).then_some(self.users[u].favourites[0]);
        let visit = Visit {
            user: user.clone(),
            session,
            device,
            planted: false,
        };
        self.click(&visit, ClickEventType::PageView, None, landing, t);
        for _ in 1..clicks {
            t += self.click_gap();
            let weights = [
                12,
                44,
                12,
                if viewed.is_some() { 20 } else { 0 },
                if cart.is_empty() { 0 } else { 4 },
                if cart.is_empty() { 0 } else { 14 },
            ];
            match self.rng.weighted(&weights) {
                0 => {
                    let category = self.rng.chance(0.6).then(|| self.pick_category(u));
                    self.click(&visit, ClickEventType::PageView, None, category, t);
                }
                1 => {
                    let p = self.pick_product(u);
                    viewed = Some(p);
                    self.click(&visit, ClickEventType::ProductView, Some(p), None, t);
                }
                2 => {
                    let category = self.pick_category(u);
                    self.click(&visit, ClickEventType::Search, None, Some(category), t);
                }
                3 => {
                    let p = viewed.unwrap_or_else(|| self.pick_product(u));
                    let quantity = match self.rng.weighted(&[80, 15, 5]) {
                        0 => 1,
                        1 => 2,
                        _ => self.rng.between(3, 6) as u32,
                    };
                    match cart.iter_mut().find(|(q, _)| *q == p) {
                        Some(line) => line.1 += quantity,
                        None => cart.push((p, quantity)),
                    }
                    self.click(&visit, ClickEventType::AddToCart, Some(p), None, t);
                }
                4 => {
                    let i = self.rng.below(cart.len() as u64) as usize;
                    let (p, _) = cart.remove(i);
                    self.click(&visit, ClickEventType::RemoveFromCart, Some(p), None, t);
                }
                _ => {
                    self.click(&visit, ClickEventType::CheckoutStart, None, None, t);
                    if self.rng.chance(0.75) {
                        t += self.rng.between(15 * SECOND, 3 * MINUTE);
                        let currency = match self.rng.weighted(&[94, 3, 3]) {
                            0 => Currency::TRY,
                            1 => Currency::EUR,
                            _ => Currency::USD,
                        };
                        let lines = std::mem::take(&mut cart);
                        self.place_order(&user, &lines, currency, t, false, None);
                        break;
                    }
                }
            }
        }
        t
    }

    fn pick_category(&mut self, u: usize) -> usize {
        if self.rng.chance(0.6) {
            *self.rng.pick(&self.users[u].favourites)
        } else {
            self.rng.below(CATEGORIES.len() as u64) as usize
        }
    }

    /// Emits an order (and maybe its later cancellation or refund).
    fn place_order(
        &mut self,
        user: &str,
        lines: &[(usize, u32)],
        currency: Currency,
        ts: i64,
        planted: bool,
        completes: Option<FraudPattern>,
    ) {
        self.orders += 1;
        let order_id = format!("o-{}-{}", self.config.seed, self.orders);
        let items: Vec<(OrderItem, i64)> = lines
            .iter()
            .map(|&(p, quantity)| {
                let product = &self.catalog.products[p];
                let unit = convert(product.price, currency);
                let item = OrderItem {
                    product_id: product.id.clone(),
                    category: CATEGORIES[product.category].0.to_owned(),
                    quantity,
                    unit_price: minor(unit),
                };
                (item, unit * i64::from(quantity))
            })
            .collect();
        let total: i64 = items.iter().map(|(_, line)| line).sum();
        let order = |status, amount: i64, items: Vec<OrderItem>, ts| OrderEvent {
            event_id: String::new(),
            order_id: order_id.clone(),
            user_id: user.to_owned(),
            status,
            amount: minor(amount),
            currency,
            items,
            ts,
        };
        let all: Vec<OrderItem> = items.iter().map(|(item, _)| item.clone()).collect();
        let placed = order(OrderStatus::Placed, total, all.clone(), ts);
        // Planted patterns stay exactly as planted: no reversal follows them.
        let later = if planted {
            None
        } else {
            match self.rng.weighted(&[89, 7, 4]) {
                0 => None,
                1 => {
                    let at = ts + self.rng.between(MINUTE, 30 * MINUTE);
                    Some(order(OrderStatus::Cancelled, total, all, at))
                }
                _ => {
                    let at = ts + self.rng.between(30 * MINUTE, 12 * HOUR);
                    if items.len() > 1 && self.rng.chance(0.4) {
                        let (item, line) =
                            items[self.rng.below(items.len() as u64) as usize].clone();
                        Some(order(OrderStatus::Refunded, line, vec![item], at))
                    } else {
                        Some(order(OrderStatus::Refunded, total, all, at))
                    }
                }
            }
        };
        self.emit(SimEvent {
            ts,
            user: user.to_owned(),
            body: Body::Order(placed),
            planted,
            completes,
        });
        if let Some(event) = later {
            self.emit(SimEvent {
                ts: event.ts,
                user: user.to_owned(),
                body: Body::Order(event),
                planted: false,
                completes: None,
            });
        }
    }

    /// An expensive product and a quantity whose line is above 5000 TRY.
    fn high_value_line(&mut self) -> (usize, u32) {
        let category = *self.rng.pick(&EXPENSIVE);
        let p = self.catalog.in_category(&mut self.rng, category);
        let price = self.catalog.products[p].price;
        let needed = (HIGH_VALUE / price + 1) as u32;
        (p, needed + self.rng.below(2) as u32)
    }

    /// A planted series of orders by an existing user: RAPID_ORDERS (3 to 5 ordinary orders,
    /// 20-55 s apart) or HIGH_VALUE_BURST (3 or 4 orders above 5000 TRY, 15-75 s apart); either
    /// way within 4 minutes. Returns the time of the last order.
    fn order_series(&mut self, u: usize, start: i64, pattern: FraudPattern) -> i64 {
        let user = self.users[u].id.clone();
        let high_value = pattern == FraudPattern::HighValueBurst;
        let (n, gap) = if high_value {
            (3 + self.rng.below(2), (15 * SECOND, 75 * SECOND))
        } else {
            (3 + self.rng.below(3), (20 * SECOND, 55 * SECOND))
        };
        let mut t = start;
        for i in 0..n {
            if i > 0 {
                t += self.rng.between(gap.0, gap.1);
            }
            let line = if high_value {
                self.high_value_line()
            } else {
                (self.pick_product(u), 1)
            };
            let completes = (i == 2).then_some(pattern);
            self.place_order(&user, &[line], Currency::TRY, t, true, completes);
        }
        t
    }

    /// A brand-new user who browses briefly and places a first order above 5000 TRY.
    fn high_value_first_order(&mut self, start: i64) {
        self.fraudsters += 1;
        let user = format!("u-f{}", self.fraudsters);
        let session = format!("s-{user}-0");
        let device = self.rng.weighted(&DEVICE_WEIGHTS);
        let (p, quantity) = self.high_value_line();
        let visit = Visit {
            user: user.clone(),
            session,
            device,
            planted: true,
        };
        let mut t = start;
        self.click(&visit, ClickEventType::PageView, None, None, t);
        t += self.click_gap();
        self.click(&visit, ClickEventType::ProductView, Some(p), None, t);
        t += self.click_gap();
        self.click(&visit, ClickEventType::AddToCart, Some(p), None, t);
        t += self.click_gap();
        self.click(&visit, ClickEventType::CheckoutStart, None, None, t);
        t += self.rng.between(15 * SECOND, 2 * MINUTE);
        self.place_order(
            &user,
            &[(p, quantity)],
            Currency::TRY,
            t,
            true,
            Some(FraudPattern::HighValueFirstOrder),
        );
    }
}

impl Iterator for Simulation {
    type Item = SimEvent;

    fn next(&mut self) -> Option<SimEvent> {
        loop {
            let Scheduled { at, item, .. } = self.queue.pop()?;
            match item {
                Item::Emit(event) => return Some(*event),
                Item::SessionStart(u) => self.start_session(u, at),
            }
        }
    }
}

/// Kuruş (or cents) as money with two decimals.
fn minor(amount: i64) -> Money {
    // Amounts here are far below the contract's 10^18 bound, so this cannot fail.
    Money::from_minor_units(amount).unwrap_or(Money::ZERO)
}

/// A TRY price in kuruş converted to `currency`'s minor units (rounded half up).
fn convert(kurus: i64, currency: Currency) -> i64 {
    let rate = if currency == Currency::EUR {
        EUR_RATE
    } else if currency == Currency::USD {
        USD_RATE
    } else {
        return kurus;
    };
    ((kurus + rate / 2) / rate).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(seed: u64, users: u32, fraud_rate: f64) -> Simulation {
        Simulation::new(SimConfig {
            seed,
            users,
            start_ts: 1_767_225_600_000,
            fraud_rate,
        })
    }

    #[test]
    fn events_come_in_event_time_order_and_validate() {
        use trendstream_events::Validate;
        let mut last = i64::MIN;
        let mut statuses = std::collections::BTreeMap::new();
        for event in sim(3, 200, 0.02).take(20_000) {
            assert!(event.ts >= last);
            last = event.ts;
            match &event.body {
                Body::Click(c) => {
                    let mut c = c.clone();
                    c.event_id = "x".into();
                    c.validate().expect("valid click");
                }
                Body::Order(o) => {
                    let mut o = o.clone();
                    o.event_id = "x".into();
                    o.validate().expect("valid order");
                    *statuses.entry(o.status.as_str().to_owned()).or_insert(0) += 1;
                }
            }
        }
        assert!(statuses.len() >= 3, "{statuses:?}");
    }

    #[test]
    fn sessions_have_short_gaps_inside_and_long_gaps_between() {
        let mut by_user: std::collections::HashMap<String, Vec<i64>> = Default::default();
        for event in sim(5, 50, 0.0).take(20_000) {
            if matches!(event.body, Body::Click(_)) {
                by_user.entry(event.user).or_default().push(event.ts);
            }
        }
        let (mut short, mut long) = (0, 0);
        for ts in by_user.values() {
            for w in ts.windows(2) {
                let gap = w[1] - w[0];
                if gap > 30 * MINUTE {
                    long += 1;
                } else if gap <= 5 * MINUTE {
                    short += 1;
                }
            }
        }
        assert!(short > 5 * long && long > 100, "short {short}, long {long}");
    }
}
