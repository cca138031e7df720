//! Rules as data: the rule-file schema, its validation, and the built-in rules.
//!
//! A rule file is YAML (or JSON, which YAML reads too):
//!
//! ```yaml
//! includeBuiltIn: false      # also run RAPID_ORDERS, HIGH_VALUE_FIRST_ORDER, HIGH_VALUE_BURST
//! rules:
//!   - name: RAPID_ORDERS     # 1-64 of A-Z a-z 0-9 _ - . : (first a letter or digit), unique
//!     severity: medium       # low | medium (default) | high | critical
//!     within: 5m             # window, inclusive at both ends
//!     count:                 # threshold: >= atLeast matching events within `within`
//!       event: order         # order | click | any
//!       where: { status: [placed] }
//!       atLeast: 3
//!   - name: HIGH_VALUE_FIRST_ORDER
//!     firstEver:             # the user's first event matching event+where, ever (no window)
//!       event: order
//!       where: { status: [placed] }
//!       having: { amountAbove: "5000", currency: TRY }   # ...alerts when it also matches this
//!   - name: CART_ABANDONMENT
//!     within: 30m
//!     sequence:              # ordered steps, first to last within `within`
//!       - { event: click, where: { eventType: [add_to_cart] } }
//!       - { event: click, where: { eventType: [checkout_start] }, absent: true }
//! ```
//!
//! Conditions (`where`, `having`): `status` (orders), `eventType` (clicks), `category` (a click's
//! category, or any item category of an order), `currency`, `amountAbove` (>), `amountAtLeast`
//! (>=), `amountBelow` (<), `amountAtMost` (<=) as decimals (`"5000.01"`; an unquoted YAML number is
//! read from its text, never through a float), and `afterGap` (the user's
//! previous event is more than this long before, or there is none: the event starts a session).
//! An amount condition compares an order's `amount` or a click's `price` (TRY) and only matches
//! events in the rule's `currency` (TRY when not given): a 6000 EUR order never passes a
//! `amountAbove: "5000"` TRY condition. All listed conditions must hold (and); a list matches any
//! of its values (or).

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;
use trendstream_events::{ClickEventType, Currency, Money, OrderStatus, Severity};

/// Longest window a rule may use: state is kept for this long of event time.
pub const MAX_WITHIN: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Most positive steps in a sequence.
pub const MAX_STEPS: usize = 16;
/// Largest count threshold.
pub const MAX_AT_LEAST: u32 = 10_000;

/// A rule file or a rule in it is wrong; the message names the rule and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("{source_name}: cannot parse: {path}: {message}")]
    Parse {
        source_name: String,
        path: String,
        message: String,
    },
    #[error("{source_name}: {rule}: {field}: {message}")]
    Invalid {
        source_name: String,
        rule: String,
        field: String,
        message: String,
    },
}

/// Which events a filter looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Order,
    Click,
    Any,
}

/// How an amount is compared with a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Above(Money),
    AtLeast(Money),
    Below(Money),
    AtMost(Money),
}

impl Bound {
    pub fn holds(self, amount: Money) -> bool {
        match self {
            Bound::Above(b) => amount > b,
            Bound::AtLeast(b) => amount >= b,
            Bound::Below(b) => amount < b,
            Bound::AtMost(b) => amount <= b,
        }
    }
}

/// Conditions on one event (all must hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub source: Source,
    pub statuses: Option<Vec<OrderStatus>>,
    pub event_types: Option<Vec<ClickEventType>>,
    pub categories: Option<Vec<String>>,
    /// Required currency; set whenever `bounds` is not empty (TRY by default).
    pub currency: Option<Currency>,
    pub bounds: Vec<Bound>,
    /// Milliseconds: the previous event of the user must be more than this much earlier.
    pub after_gap: Option<i64>,
}

impl Filter {
    /// Any event of `source`.
    pub fn any(source: Source) -> Self {
        Self {
            source,
            statuses: None,
            event_types: None,
            categories: None,
            currency: None,
            bounds: Vec::new(),
            after_gap: None,
        }
    }
}

/// What a rule detects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// At least `at_least` events matching `filter` with event times in `[t - within, t]`, checked
    /// at each matching event `t`.
    Count {
        filter: Filter,
        at_least: usize,
        within: i64,
    },
    /// The user's first event ever matching `of`, if it also matches `having`.
    FirstEver { of: Filter, having: Filter },
    /// Events matching `steps` in order, the last at most `within` after the first; with
    /// `absent`, the steps not followed by an event matching it until `first + within`.
    Sequence {
        steps: Vec<Filter>,
        absent: Option<Filter>,
        within: i64,
    },
}

/// One validated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub severity: Severity,
    pub kind: RuleKind,
}

impl Rule {
    /// Whether the rule reads events of `source` (for a startup warning when no input has them).
    pub fn reads(&self, source: Source) -> bool {
        let filters: Vec<&Filter> = match &self.kind {
            RuleKind::Count { filter, .. } => vec![filter],
            RuleKind::FirstEver { of, .. } => vec![of],
            RuleKind::Sequence { steps, absent, .. } => steps.iter().chain(absent).collect(),
        };
        filters
            .iter()
            .any(|f| f.source == source || f.source == Source::Any)
    }
}

// ---- the file schema ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFile {
    #[serde(default)]
    include_built_in: bool,
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRule {
    name: String,
    #[serde(default)]
    severity: Severity,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    within: Option<String>,
    count: Option<RawCount>,
    first_ever: Option<RawFirstEver>,
    sequence: Option<Vec<RawStep>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCount {
    event: Source,
    #[serde(default, rename = "where")]
    conditions: RawConditions,
    at_least: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFirstEver {
    event: Source,
    #[serde(default, rename = "where")]
    conditions: RawConditions,
    #[serde(default)]
    having: RawConditions,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawStep {
    event: Source,
    #[serde(default, rename = "where")]
    conditions: RawConditions,
    #[serde(default)]
    absent: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a map of conditions, e.g. {status: [placed], amountAbove: \"5000\", currency: TRY}"
)]
struct RawConditions {
    status: Option<Vec<OrderStatus>>,
    event_type: Option<Vec<ClickEventType>>,
    category: Option<Vec<String>>,
    currency: Option<Currency>,
    amount_above: Option<String>,
    amount_at_least: Option<String>,
    amount_below: Option<String>,
    amount_at_most: Option<String>,
    after_gap: Option<String>,
}

/// Parses and validates a rule file's text; `source_name` (the path) prefixes every error.
pub fn parse_rules(text: &str, source_name: &str) -> Result<Vec<Rule>, RuleError> {
    let names = rule_names(text);
    let de = serde_yaml::Deserializer::from_str(text);
    let raw: RawFile = serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let message = err.inner().to_string();
        // serde_yaml repeats the path in front of its message.
        let message = message
            .strip_prefix(&format!("{path}: "))
            .map_or(message.clone(), str::to_owned);
        RuleError::Parse {
            source_name: source_name.to_owned(),
            path: name_path(&path, &names),
            message,
        }
    })?;
    let invalid = |rule: &str, field: &str, message: String| RuleError::Invalid {
        source_name: source_name.to_owned(),
        rule: rule.to_owned(),
        field: field.to_owned(),
        message,
    };
    let mut rules = if raw.include_built_in {
        built_in_rules()
    } else {
        Vec::new()
    };
    for (index, raw_rule) in raw.rules.into_iter().enumerate() {
        let label = format!("rules[{index}] ({})", raw_rule.name);
        let rule =
            compile_rule(raw_rule).map_err(|(field, message)| invalid(&label, &field, message))?;
        rules.push(rule);
    }
    if rules.is_empty() {
        return Err(invalid(
            "rules",
            "rules",
            "no rules: list at least one rule (or set includeBuiltIn: true)".into(),
        ));
    }
    let mut seen = BTreeSet::new();
    for rule in &rules {
        if !seen.insert(rule.name.as_str()) {
            return Err(invalid(
                &format!("rule {}", rule.name),
                "name",
                "two rules have this name (built-in rules included)".into(),
            ));
        }
    }
    Ok(rules)
}

/// Best-effort rule names by index, to name rules in parse errors.
fn rule_names(text: &str) -> Vec<String> {
    let value: serde_yaml::Value = serde_yaml::from_str(text).unwrap_or(serde_yaml::Value::Null);
    value
        .get("rules")
        .and_then(serde_yaml::Value::as_sequence)
        .map(|rules| {
            rules
                .iter()
                .map(|r| {
                    r.get("name")
                        .and_then(serde_yaml::Value::as_str)
                        .unwrap_or("")
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `rules[1].count.atLeast` becomes `rules[1] (HIGH_VALUE_BURST).count.atLeast`.
fn name_path(path: &str, names: &[String]) -> String {
    let Some(rest) = path.strip_prefix("rules[") else {
        return path.to_owned();
    };
    let Some((index, tail)) = rest.split_once(']') else {
        return path.to_owned();
    };
    match index.parse::<usize>().ok().and_then(|i| names.get(i)) {
        Some(name) if !name.is_empty() => format!("rules[{index}] ({name}){tail}"),
        _ => path.to_owned(),
    }
}

type FieldError = (String, String);

fn field_err(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    (field.into(), message.into())
}

fn valid_name(name: &str) -> bool {
    name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

fn duration_ms(field: &str, value: &str) -> Result<i64, FieldError> {
    let d =
        trendstream_service::duration::parse(value).map_err(|e| field_err(field, e.to_string()))?;
    if d.is_zero() {
        return Err(field_err(field, "must be positive"));
    }
    if d > MAX_WITHIN {
        return Err(field_err(field, "must be at most 168h (7 days)"));
    }
    i64::try_from(d.as_millis()).map_err(|_| field_err(field, "too long"))
}

fn compile_rule(raw: RawRule) -> Result<Rule, FieldError> {
    if !valid_name(&raw.name) {
        return Err(field_err(
            "name",
            "1 to 64 characters of A-Z a-z 0-9 _ - . :, the first a letter or digit",
        ));
    }
    let kinds = usize::from(raw.count.is_some())
        + usize::from(raw.first_ever.is_some())
        + usize::from(raw.sequence.is_some());
    if kinds != 1 {
        return Err(field_err(
            "count|firstEver|sequence",
            "a rule has exactly one of count, firstEver or sequence",
        ));
    }
    let within = raw
        .within
        .as_deref()
        .map(|w| duration_ms("within", w))
        .transpose()?;
    let kind = if let Some(count) = raw.count {
        let within = within.ok_or_else(|| field_err("within", "a count rule needs a window"))?;
        if count.at_least == 0 || count.at_least > MAX_AT_LEAST {
            return Err(field_err("count.atLeast", "must be between 1 and 10000"));
        }
        RuleKind::Count {
            filter: compile_filter("count.where", count.event, count.conditions)?,
            at_least: count.at_least as usize,
            within,
        }
    } else if let Some(first) = raw.first_ever {
        if within.is_some() {
            return Err(field_err(
                "within",
                "firstEver looks at the user's whole history; remove the window",
            ));
        }
        RuleKind::FirstEver {
            of: compile_filter("firstEver.where", first.event, first.conditions)?,
            having: compile_filter("firstEver.having", first.event, first.having)?,
        }
    } else {
        let raw_steps = raw.sequence.unwrap_or_default();
        let within = within.ok_or_else(|| field_err("within", "a sequence needs a window"))?;
        let mut steps = Vec::new();
        let mut absent = None;
        let count = raw_steps.len();
        for (i, step) in raw_steps.into_iter().enumerate() {
            let field = format!("sequence[{i}]");
            let filter = compile_filter(&format!("{field}.where"), step.event, step.conditions)?;
            if step.absent {
                if i + 1 != count || i == 0 {
                    return Err(field_err(
                        format!("{field}.absent"),
                        "only the last step of a sequence, after at least one present step, may be absent",
                    ));
                }
                absent = Some(filter);
            } else {
                steps.push(filter);
            }
        }
        if count < 2 {
            return Err(field_err(
                "sequence",
                "a sequence has at least two steps (a single event is a count rule with atLeast: 1)",
            ));
        }
        if steps.len() > MAX_STEPS {
            return Err(field_err("sequence", "at most 16 steps"));
        }
        RuleKind::Sequence {
            steps,
            absent,
            within,
        }
    };
    Ok(Rule {
        name: raw.name,
        severity: raw.severity,
        kind,
    })
}

fn compile_filter(field: &str, source: Source, raw: RawConditions) -> Result<Filter, FieldError> {
    if raw.status.is_some() && source != Source::Order {
        return Err(field_err(
            format!("{field}.status"),
            "status applies to orders only (event: order)",
        ));
    }
    if raw.event_type.is_some() && source != Source::Click {
        return Err(field_err(
            format!("{field}.eventType"),
            "eventType applies to clicks only (event: click)",
        ));
    }
    for (name, list) in [
        ("status", raw.status.as_ref().map(Vec::len)),
        ("eventType", raw.event_type.as_ref().map(Vec::len)),
        ("category", raw.category.as_ref().map(Vec::len)),
    ] {
        if list == Some(0) {
            return Err(field_err(
                format!("{field}.{name}"),
                "an empty list matches nothing; list at least one value or leave it out",
            ));
        }
    }
    let mut bounds = Vec::new();
    for (name, value, make) in [
        (
            "amountAbove",
            &raw.amount_above,
            Bound::Above as fn(Money) -> Bound,
        ),
        ("amountAtLeast", &raw.amount_at_least, Bound::AtLeast),
        ("amountBelow", &raw.amount_below, Bound::Below),
        ("amountAtMost", &raw.amount_at_most, Bound::AtMost),
    ] {
        if let Some(text) = value {
            let amount: Money = text.parse().map_err(|e| {
                field_err(
                    format!("{field}.{name}"),
                    format!("{e} (write amounts as decimals: \"5000.01\")"),
                )
            })?;
            bounds.push(make(amount));
        }
    }
    let currency = match (raw.currency, bounds.is_empty()) {
        (Some(c), _) => Some(c),
        (None, false) => Some(Currency::TRY),
        (None, true) => None,
    };
    let after_gap = raw
        .after_gap
        .as_deref()
        .map(|g| duration_ms(&format!("{field}.afterGap"), g))
        .transpose()?;
    Ok(Filter {
        source,
        statuses: raw.status,
        event_types: raw.event_type,
        categories: raw.category,
        currency,
        bounds,
        after_gap,
    })
}

/// 5 minutes in milliseconds.
const FIVE_MINUTES: i64 = 5 * 60 * 1000;

fn placed_orders() -> Filter {
    Filter {
        statuses: Some(vec![OrderStatus::Placed]),
        ..Filter::any(Source::Order)
    }
}

fn above_5000_try() -> Filter {
    Filter {
        currency: Some(Currency::TRY),
        bounds: vec![Bound::Above(Money::new(5000.into()))],
        ..placed_orders()
    }
}

/// The rules that run when no rule file is given (DESIGN.md "Processors").
pub fn built_in_rules() -> Vec<Rule> {
    vec![
        Rule {
            name: "RAPID_ORDERS".into(),
            severity: Severity::Medium,
            kind: RuleKind::Count {
                filter: placed_orders(),
                at_least: 3,
                within: FIVE_MINUTES,
            },
        },
        Rule {
            name: "HIGH_VALUE_FIRST_ORDER".into(),
            severity: Severity::High,
            kind: RuleKind::FirstEver {
                of: placed_orders(),
                having: above_5000_try(),
            },
        },
        Rule {
            name: "HIGH_VALUE_BURST".into(),
            severity: Severity::Critical,
            kind: RuleKind::Count {
                filter: above_5000_try(),
                at_least: 3,
                within: FIVE_MINUTES,
            },
        },
    ]
}

/// The built-in rules written in the rule-file schema (docs and tests check they are equal).
pub const BUILT_IN_YAML: &str = r#"rules:
  - name: RAPID_ORDERS
    severity: medium
    within: 5m
    count: { event: order, where: { status: [placed] }, atLeast: 3 }
  - name: HIGH_VALUE_FIRST_ORDER
    severity: high
    firstEver:
      event: order
      where: { status: [placed] }
      having: { status: [placed], amountAbove: "5000", currency: TRY }
  - name: HIGH_VALUE_BURST
    severity: critical
    within: 5m
    count:
      event: order
      where: { status: [placed], amountAbove: "5000", currency: TRY }
      atLeast: 3
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_yaml_is_the_built_in_rules() {
        assert_eq!(parse_rules(BUILT_IN_YAML, "t").unwrap(), built_in_rules());
    }

    #[test]
    fn json_is_accepted() {
        let rules = parse_rules(
            r#"{"rules":[{"name":"X","within":"1m","count":{"event":"click","where":{"eventType":["search"]},"atLeast":20}}]}"#,
            "t",
        )
        .unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0].kind,
            RuleKind::Count {
                filter: Filter {
                    event_types: Some(vec![ClickEventType::Search]),
                    ..Filter::any(Source::Click)
                },
                at_least: 20,
                within: 60_000,
            }
        );
    }

    #[test]
    fn errors_name_the_rule_and_the_field() {
        let cases: &[(&str, &[&str])] = &[
            (
                "rules: [{name: A, within: 5m, count: {event: order, atLeast: 0}}]",
                &["rules[0] (A)", "count.atLeast"],
            ),
            (
                "rules: [{name: B, within: 5m, count: {event: order, where: \"amount > 5000\", atLeast: 3}}]",
                &[
                    "rules[0] (B).count.where: invalid type",
                    "a map of conditions",
                ],
            ),
            (
                "rules: [{name: C, within: 5m, count: {event: order, where: {amountAbove: [1]}, atLeast: 3}}]",
                &["rules[0] (C).count.where.amountAbove"],
            ),
            (
                "rules: [{name: D, within: 5m, count: {event: order, where: {amountAbove: \"5,000\"}, atLeast: 3}}]",
                &["rules[0] (D)", "count.where.amountAbove", "decimal"],
            ),
            (
                "rules: [{name: E, within: soon, count: {event: order, atLeast: 3}}]",
                &["rules[0] (E)", "within", "soon"],
            ),
            (
                "rules: [{name: F, count: {event: order, atLeast: 3}}]",
                &["rules[0] (F)", "within"],
            ),
            (
                "rules: [{name: G, within: 5m, count: {event: click, where: {status: [placed]}, atLeast: 3}}]",
                &["rules[0] (G)", "count.where.status"],
            ),
            (
                "rules: [{name: H, within: 5m, sequence: [{event: click, absent: true}, {event: click}]}]",
                &["rules[0] (H)", "sequence[0].absent"],
            ),
            (
                "rules: [{name: I, within: 5m, sequence: [{event: click}]}]",
                &["rules[0] (I)", "sequence"],
            ),
            (
                "rules: [{name: J, within: 5m, count: {event: order, atLeast: 3}, firstEver: {event: order}}]",
                &["rules[0] (J)", "exactly one"],
            ),
            (
                "rules: [{name: K, within: 5m, firstEver: {event: order}}]",
                &["rules[0] (K)", "within"],
            ),
            (
                "rules: [{name: \"bad name\", within: 5m, count: {event: order, atLeast: 3}}]",
                &["rules[0] (bad name)", "name"],
            ),
            (
                "rules: [{name: L, within: 5m, count: {event: order, atLeast: 3, typo: 1}}]",
                &["rules[0] (L).count", "typo"],
            ),
            (
                "rules: [{name: M, within: 5m, count: {event: order, where: {status: [shipped]}, atLeast: 3}}]",
                &["rules[0] (M).count.where.status", "shipped"],
            ),
            (
                "includeBuiltIn: true\nrules: [{name: RAPID_ORDERS, within: 5m, count: {event: order, atLeast: 3}}]",
                &["RAPID_ORDERS", "name"],
            ),
            ("rules: []", &["no rules"]),
            (
                "rules: [{name: N, within: 200h, count: {event: order, atLeast: 1}}]",
                &["(N)", "within", "168h"],
            ),
        ];
        for (text, needles) in cases {
            let err = parse_rules(text, "rules.yaml").expect_err(text).to_string();
            assert!(err.starts_with("rules.yaml: "), "{err}");
            for needle in *needles {
                assert!(
                    err.contains(needle),
                    "{text}\n  error: {err}\n  missing: {needle}"
                );
            }
        }
    }

    #[test]
    fn amount_bounds_default_to_try() {
        let rules = parse_rules(
            "rules: [{name: A, within: 1m, count: {event: order, where: {amountAtLeast: \"10.5\", amountBelow: \"20\"}, atLeast: 1}}]",
            "t",
        )
        .unwrap();
        let RuleKind::Count { filter, .. } = &rules[0].kind else {
            panic!("count rule expected");
        };
        assert_eq!(filter.currency, Some(Currency::TRY));
        assert_eq!(filter.bounds.len(), 2);
    }

    #[test]
    fn unquoted_amounts_are_read_from_their_text() {
        let rules = parse_rules(
            "rules: [{name: A, within: 1m, count: {event: order, where: {amountAbove: 5000.10}, atLeast: 1}}]",
            "t",
        )
        .unwrap();
        let RuleKind::Count { filter, .. } = &rules[0].kind else {
            panic!("count rule expected");
        };
        let expected: Money = "5000.10".parse().unwrap();
        assert_eq!(filter.bounds, vec![Bound::Above(expected)]);
        assert_eq!(filter.bounds[0], Bound::Above("5000.1".parse().unwrap()));
    }

    #[test]
    fn include_built_in_adds_the_defaults() {
        let rules = parse_rules(
            "includeBuiltIn: true\nrules: [{name: X, within: 1m, count: {event: click, atLeast: 50}}]",
            "t",
        )
        .unwrap();
        let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "RAPID_ORDERS",
                "HIGH_VALUE_FIRST_ORDER",
                "HIGH_VALUE_BURST",
                "X"
            ]
        );
    }

    #[test]
    fn every_example_rule_file_is_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/rules");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("examples/rules") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("readable");
            parse_rules(&text, &path.display().to_string()).unwrap_or_else(|e| panic!("{e}"));
            checked += 1;
        }
        assert!(checked >= 4, "{checked} example rule files");
        let built_in = std::fs::read_to_string(dir.join("built-in.yaml")).expect("built-in.yaml");
        assert_eq!(
            parse_rules(&built_in, "built-in.yaml").unwrap(),
            built_in_rules()
        );
    }

    #[test]
    fn the_fraud_job_examples_rules_are_valid() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fraud-job.yaml");
        let job: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).expect("fraud-job.yaml"))
                .expect("yaml");
        let rules = job["spec"]["config"]["fraudRules"]
            .as_str()
            .expect("spec.config.fraudRules");
        let parsed = parse_rules(rules, "fraud-job.yaml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.len(), 2);
    }
}
