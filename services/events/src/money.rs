//! Money: exact decimal amounts and ISO 4217 currency codes.
//!
//! Floats cannot represent most decimal fractions (0.1 + 0.2 != 0.3), and revenue sums over
//! millions of orders would drift, so amounts are [`rust_decimal::Decimal`] and are always
//! written as decimal strings (`"5000.00"`), never as JSON numbers.
//!
//! Accepted on input:
//! - a decimal string: optional `-`, digits, optional `.` and digits (`"5000.00"`, `"-3.5"`);
//! - a JSON integer, read as **minor units** (kuruş, cents) at [`INTEGER_AMOUNT_SCALE`]
//!   decimal places: `500000` is `5000.00`. This follows the contract in DESIGN.md ("decimal
//!   strings or integer minor units"), the convention of payment APIs, and means an integer
//!   never silently gains precision it did not have. TRY, EUR and USD all have two minor
//!   digits; a currency with a different exponent (JPY) must be sent as a decimal string.
//!
//! JSON floats (`12.5`) are rejected: by the time a float is parsed its decimal value may
//! already be lost, so guessing would hide producer bugs.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::time::snippet;

/// Decimal places applied to JSON integer amounts (they are minor units). The single place to
/// change should the contract ever switch to whole currency units (set it to 0).
pub const INTEGER_AMOUNT_SCALE: u32 = 2;

/// Largest accepted absolute amount, 10^18. Orders are far below it; bounding inputs keeps
/// every sum the processors compute (windows of up to 10^10 orders) inside `Decimal`'s range,
/// so arithmetic on decoded data cannot overflow.
pub const MAX_ABS_AMOUNT: Decimal = Decimal::from_parts(0xA764_0000, 0x0DE0_B6B3, 0, false, 0);

/// Why an amount was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MoneyError {
    /// The text is not a plain decimal number.
    #[error("money must be a decimal string such as \"12.50\", got {0:?}")]
    Syntax(String),
    /// More digits than `Decimal` holds, or beyond [`MAX_ABS_AMOUNT`].
    #[error("money amount {0} is outside the supported range (absolute value at most 10^18)")]
    OutOfRange(String),
}

/// An exact monetary amount (no currency attached; events carry the currency beside it).
///
/// Equality is numeric: `5000.00 == 5000`. The scale of an input string is kept when it is
/// written back (`"5000.00"` stays `"5000.00"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(Decimal);

impl Money {
    /// Zero.
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// Wraps a decimal without range checks (callers computing sums use the checked ops).
    pub const fn new(amount: Decimal) -> Self {
        Self(amount)
    }

    /// The amount.
    pub const fn amount(self) -> Decimal {
        self.0
    }

    /// Reads an integer count of minor units, e.g. `from_minor_units(500000)` is `5000.00`.
    pub fn from_minor_units(minor: i64) -> Result<Self, MoneyError> {
        checked(Decimal::try_from_i128_with_scale(
            i128::from(minor),
            INTEGER_AMOUNT_SCALE,
        ))
        .ok_or_else(|| MoneyError::OutOfRange(minor.to_string()))
    }

    /// True for amounts below zero.
    pub fn is_negative(self) -> bool {
        self.0.is_sign_negative() && !self.0.is_zero()
    }

    /// Sum, or `None` on overflow.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    /// Difference, or `None` on overflow.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }

    /// Amount times a quantity (line totals), or `None` on overflow.
    pub fn checked_mul_quantity(self, quantity: u32) -> Option<Money> {
        self.0.checked_mul(Decimal::from(quantity)).map(Money)
    }

    /// Amount divided by a count, rounded to 2 decimal places half-to-even (banker's rounding,
    /// the unbiased choice for aggregates); `None` when `count` is zero or on overflow.
    pub fn checked_div_count(self, count: i64) -> Option<Money> {
        if count == 0 {
            return None;
        }
        self.0
            .checked_div(Decimal::from(count))
            .map(|q| Money(q.round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven)))
    }

    /// The negated amount (never overflows: `Decimal` is sign-magnitude).
    pub fn negated(self) -> Money {
        Money(-self.0)
    }
}

impl From<Decimal> for Money {
    fn from(amount: Decimal) -> Self {
        Self(amount)
    }
}

impl From<Money> for Decimal {
    fn from(m: Money) -> Self {
        m.0
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    /// Strict: only `-?digits(.digits)?`; no exponent, `+`, `_` or whitespace, so what is
    /// accepted is exactly what other languages' decimal parsers accept too.
    fn from_str(s: &str) -> Result<Self, MoneyError> {
        if !is_plain_decimal(s) {
            return Err(MoneyError::Syntax(snippet(s)));
        }
        let parsed = Decimal::from_str_exact(s).map_err(|_| MoneyError::OutOfRange(snippet(s)))?;
        checked(Ok(parsed)).ok_or_else(|| MoneyError::OutOfRange(snippet(s)))
    }
}

fn is_plain_decimal(s: &str) -> bool {
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    digits(int) && frac.is_none_or(digits)
}

fn checked(parsed: Result<Decimal, rust_decimal::Error>) -> Option<Money> {
    parsed.ok().filter(|d| d.abs() <= MAX_ABS_AMOUNT).map(Money)
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MoneyVisitor)
    }
}

struct MoneyVisitor;

impl Visitor<'_> for MoneyVisitor {
    type Value = Money;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a decimal string such as \"12.50\" or an integer amount in minor units")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Money, E> {
        Money::from_str(v).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Money, E> {
        Money::from_minor_units(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Money, E> {
        i64::try_from(v)
            .map_err(|_| MoneyError::OutOfRange(v.to_string()))
            .and_then(Money::from_minor_units)
            .map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Money, E> {
        Err(E::custom(format_args!(
            "money must be a decimal string such as \"12.50\", not the JSON float {v}"
        )))
    }
}

/// Why a currency code was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("currency must be a 3-letter uppercase ISO 4217 code such as \"TRY\", got {0:?}")]
pub struct CurrencyError(String);

/// An ISO 4217 alphabetic code: exactly three ASCII uppercase letters. Defaults to TRY, the
/// platform's home currency, when a record omits it (or sends `null`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Turkish lira, the default.
    pub const TRY: Currency = Currency(*b"TRY");
    /// Euro.
    pub const EUR: Currency = Currency(*b"EUR");
    /// US dollar.
    pub const USD: Currency = Currency(*b"USD");

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Construction only admits ASCII uppercase letters, so this is always valid UTF-8.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl Default for Currency {
    fn default() -> Self {
        Self::TRY
    }
}

impl FromStr for Currency {
    type Err = CurrencyError;

    fn from_str(s: &str) -> Result<Self, CurrencyError> {
        match s.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Self([a, b, c])),
            _ => Err(CurrencyError(snippet(s))),
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            None => Ok(Self::default()),
            Some(code) => code.parse().map_err(de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str_exact(s).expect("test decimal")
    }

    #[test]
    fn max_abs_amount_is_ten_to_the_eighteenth() {
        assert_eq!(MAX_ABS_AMOUNT, Decimal::from(1_000_000_000_000_000_000_i64));
    }

    #[test]
    fn accepts_decimal_strings_and_integer_minor_units() {
        let cases: &[(&str, &str)] = &[
            ("\"5000.00\"", "5000.00"),
            ("\"0\"", "0"),
            ("\"-12.5\"", "-12.5"),
            ("\"0.0001\"", "0.0001"),
            ("\"1000000000000000000\"", "1000000000000000000"),
            ("500000", "5000.00"),
            ("1", "0.01"),
            ("-250", "-2.50"),
            ("0", "0.00"),
        ];
        for (input, want) in cases {
            let m: Money = serde_json::from_str(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(m.amount(), dec(want), "{input}");
            assert_eq!(m.to_string(), *want, "{input} keeps its scale");
            let written = serde_json::to_string(&m).expect("serialize");
            assert_eq!(
                written,
                format!("\"{want}\""),
                "{input} is written as a string"
            );
        }
    }

    #[test]
    fn rejects_floats_and_malformed_strings() {
        let cases: &[(&str, &str)] = &[
            ("12.5", "money must be a decimal string"),
            ("5000.0", "not the JSON float"),
            ("1e3", "money must be a decimal string"),
            ("\"1e3\"", "money must be a decimal string"),
            ("\"12,50\"", "money must be a decimal string"),
            ("\"+1\"", "money must be a decimal string"),
            ("\"1_000\"", "money must be a decimal string"),
            ("\" 1\"", "money must be a decimal string"),
            ("\"\"", "money must be a decimal string"),
            ("\".5\"", "money must be a decimal string"),
            ("\"5.\"", "money must be a decimal string"),
            ("\"-\"", "money must be a decimal string"),
            ("\"NaN\"", "money must be a decimal string"),
            ("\"1000000000000000000.01\"", "outside the supported range"),
            (
                "\"99999999999999999999999999999999\"",
                "outside the supported range",
            ),
            (
                "\"0.00000000000000000000000000001\"",
                "outside the supported range",
            ),
            ("18446744073709551615", "outside the supported range"),
            ("true", "decimal string"),
            ("null", "decimal string"),
        ];
        for (input, want) in cases {
            let err = serde_json::from_str::<Money>(input)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(want), "{input}: {err:?}");
        }
    }

    #[test]
    fn arithmetic_is_checked_and_rounds_half_even() {
        let a = Money::new(dec("10.005"));
        assert_eq!(a.checked_div_count(1), Some(Money::new(dec("10.00"))));
        assert_eq!(
            Money::new(dec("10.015")).checked_div_count(1),
            Some(Money::new(dec("10.02")))
        );
        assert_eq!(
            Money::new(dec("100")).checked_div_count(3),
            Some(Money::new(dec("33.33")))
        );
        assert_eq!(a.checked_div_count(0), None);
        assert_eq!(
            Money::new(Decimal::MAX).checked_add(Money::new(Decimal::MAX)),
            None
        );
        assert_eq!(
            Money::new(dec("2.50")).checked_mul_quantity(3),
            Some(Money::new(dec("7.50")))
        );
        assert!(Money::new(dec("-0.01")).is_negative());
        assert!(!Money::new(dec("-0.00")).is_negative());
        assert_eq!(Money::new(dec("3")).negated(), Money::new(dec("-3")));
    }

    #[test]
    fn currency_codes() {
        #[derive(Deserialize)]
        struct Holder {
            #[serde(default)]
            currency: Currency,
        }
        let ok: &[(&str, &str)] = &[
            (r#"{"currency":"EUR"}"#, "EUR"),
            (r#"{}"#, "TRY"),
            (r#"{"currency":null}"#, "TRY"),
        ];
        for (input, want) in ok {
            let h: Holder = serde_json::from_str(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(h.currency.as_str(), *want);
        }
        for bad in [
            "\"try\"",
            "\"TRYX\"",
            "\"TR\"",
            "\"T1Y\"",
            "\"\"",
            "\"ÇÇÇ\"",
            "42",
        ] {
            let json = format!(r#"{{"currency":{bad}}}"#);
            let err = serde_json::from_str::<Holder>(&json)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.contains("currency must be") || err.contains("invalid type"),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            serde_json::to_string(&Currency::USD).ok().as_deref(),
            Some("\"USD\"")
        );
    }
}
