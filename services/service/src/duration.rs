//! Durations in StreamJob specs and service settings: Go-style strings such as `30s`, `5m`, `1h30m`, `250ms`.
//!
//! The CRD schema carries [`PATTERN`], so the API server rejects a malformed duration before the
//! operator sees it; [`parse`] is the same grammar for the operator's own use.

use std::time::Duration;

/// The grammar of a duration, as a JSON-schema pattern: one or more `<digits><unit>` groups.
pub const PATTERN: &str = "^([0-9]+(ms|s|m|h))+$";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid duration {value:?}: expected groups of <digits><unit> with unit ms, s, m or h (e.g. 30s, 5m, 1h30m)"
)]
pub struct InvalidDuration {
    pub value: String,
}

/// Parses `30s`, `5m`, `1h30m`, `250ms`.
pub fn parse(value: &str) -> Result<Duration, InvalidDuration> {
    let invalid = || InvalidDuration {
        value: value.to_owned(),
    };
    if value.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    let mut rest = value;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(invalid)?;
        if digits == 0 {
            return Err(invalid());
        }
        let amount: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let (unit, millis) = if rest.starts_with("ms") {
            ("ms", 1)
        } else if rest.starts_with('s') {
            ("s", 1_000)
        } else if rest.starts_with('m') {
            ("m", 60_000)
        } else if rest.starts_with('h') {
            ("h", 3_600_000)
        } else {
            return Err(invalid());
        };
        rest = &rest[unit.len()..];
        let part = amount.checked_mul(millis).ok_or_else(invalid)?;
        total = total
            .checked_add(Duration::from_millis(part))
            .ok_or_else(invalid)?;
    }
    Ok(total)
}

/// The inverse of [`parse`] for messages: `300000` ms as `5m`, `90500` as `1m30s500ms`.
pub fn format_ms(ms: i64) -> String {
    if ms <= 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_formatted_like_the_config() {
        for (ms, text) in [
            (300_000, "5m"),
            (90_500, "1m30s500ms"),
            (3_600_000, "1h"),
            (0, "0s"),
        ] {
            assert_eq!(format_ms(ms), text);
        }
    }

    #[test]
    fn accepts_the_documented_forms() {
        for (text, millis) in [
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("250ms", 250),
            ("0s", 0),
            ("1m30s500ms", 90_500),
        ] {
            assert_eq!(parse(text), Ok(Duration::from_millis(millis)), "{text}");
        }
    }

    #[test]
    fn rejects_what_the_schema_pattern_rejects() {
        let pattern = regex_lite::Regex::new(PATTERN).unwrap();
        for text in ["", "30", "s", "5 m", "1.5h", "10d", "-5s", "5M", "m5"] {
            assert!(parse(text).is_err(), "{text} parsed");
            assert!(!pattern.is_match(text), "{text} matched the schema pattern");
        }
        for text in ["30s", "1h30m", "250ms"] {
            assert!(pattern.is_match(text), "{text}");
        }
    }
}
