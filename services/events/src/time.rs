//! Event time: integer milliseconds since the Unix epoch.
//!
//! Integers are what the processors compute with (windows, watermarks, timers), so that is the
//! only form ever written. Producers outside our control (scripts, other teams, Debezium's
//! `ZonedTimestamp`) often send RFC 3339 strings, so those are accepted on input too.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Why a timestamp could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TimeError {
    /// The string is not an RFC 3339 timestamp.
    #[error("invalid RFC 3339 timestamp {input:?}: {reason}")]
    Rfc3339 { input: String, reason: String },
    /// The value does not fit in i64 milliseconds.
    #[error("timestamp {0} is out of the supported range")]
    OutOfRange(String),
}

/// Milliseconds since the Unix epoch (UTC). Serializes as a JSON integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventTime(pub i64);

impl EventTime {
    /// Wraps epoch milliseconds.
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// The epoch milliseconds.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// Parses an RFC 3339 timestamp (any offset) into epoch milliseconds; sub-millisecond
    /// digits are truncated toward the past so ordering is preserved.
    pub fn parse_rfc3339(input: &str) -> Result<Self, TimeError> {
        DateTime::parse_from_rfc3339(input)
            .map(|t| Self(t.timestamp_millis()))
            .map_err(|e| TimeError::Rfc3339 {
                input: snippet(input),
                reason: e.to_string(),
            })
    }

    /// Formats as RFC 3339 in UTC with millisecond precision, e.g. for logs and dashboards.
    /// `None` when the value is outside chrono's calendar range.
    pub fn to_rfc3339(self) -> Option<String> {
        DateTime::<Utc>::from_timestamp_millis(self.0)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl From<i64> for EventTime {
    fn from(millis: i64) -> Self {
        Self(millis)
    }
}

impl From<EventTime> for i64 {
    fn from(t: EventTime) -> Self {
        t.0
    }
}

impl fmt::Display for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for EventTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(self.0)
    }
}

impl<'de> Deserialize<'de> for EventTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EventTimeVisitor)
    }
}

struct EventTimeVisitor;

const EXPECTED: &str = "integer epoch milliseconds or an RFC 3339 string";

impl Visitor<'_> for EventTimeVisitor {
    type Value = EventTime;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<EventTime, E> {
        Ok(EventTime(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<EventTime, E> {
        i64::try_from(v)
            .map(EventTime)
            .map_err(|_| E::custom(TimeError::OutOfRange(v.to_string())))
    }

    // Fractional milliseconds are rejected rather than rounded: a float here means the producer
    // is using the wrong unit (often seconds), and guessing would corrupt event time silently.
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<EventTime, E> {
        Err(E::custom(format_args!(
            "expected {EXPECTED}, got the float {v}"
        )))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<EventTime, E> {
        EventTime::parse_rfc3339(v).map_err(E::custom)
    }
}

/// `#[serde(with = "crate::time::epoch_millis")]` for plain `i64` millisecond fields: same
/// input rules as [`EventTime`], written as an integer.
pub mod epoch_millis {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::EventTime;

    /// Writes the integer.
    pub fn serialize<S: Serializer>(millis: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(*millis)
    }

    /// Reads an integer or an RFC 3339 string.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        EventTime::deserialize(deserializer).map(EventTime::millis)
    }
}

/// Caps user input echoed in error messages, so a garbage record cannot produce a huge
/// dead-letter header.
pub(crate) fn snippet(input: &str) -> String {
    const MAX: usize = 64;
    match input.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &input[..cut]),
        None => input.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Holder {
        #[serde(with = "epoch_millis")]
        ts: i64,
        t: EventTime,
    }

    #[test]
    fn accepts_integers_and_rfc3339_strings() {
        let cases: &[(&str, i64)] = &[
            ("1700000000123", 1_700_000_000_123),
            ("0", 0),
            ("\"2023-11-14T22:13:20.123Z\"", 1_700_000_000_123),
            ("\"2023-11-15T01:13:20.123+03:00\"", 1_700_000_000_123),
            ("\"2023-11-14T22:13:20.123999Z\"", 1_700_000_000_123),
            ("\"1970-01-01T00:00:00Z\"", 0),
        ];
        for (input, want) in cases {
            let json = format!(r#"{{"ts": {input}, "t": {input}}}"#);
            let got: Holder =
                serde_json::from_str(&json).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got.ts, *want, "{input}");
            assert_eq!(got.t, EventTime(*want), "{input}");
            assert_eq!(
                serde_json::to_string(&got).ok(),
                Some(format!(r#"{{"ts":{want},"t":{want}}}"#))
            );
        }
    }

    #[test]
    fn rejects_floats_garbage_and_overflow() {
        let cases: &[(&str, &str)] = &[
            ("1700000000.5", "float"),
            ("\"yesterday\"", "invalid RFC 3339"),
            ("\"2023-11-14 22:13:20\"", "invalid RFC 3339"),
            ("18446744073709551615", "out of the supported range"),
            ("true", EXPECTED),
            ("null", EXPECTED),
        ];
        for (input, want) in cases {
            let err = serde_json::from_str::<EventTime>(input)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn formats_as_rfc3339_millis() {
        assert_eq!(
            EventTime(1_700_000_000_123).to_rfc3339().as_deref(),
            Some("2023-11-14T22:13:20.123Z")
        );
        assert_eq!(EventTime(i64::MAX).to_rfc3339(), None);
    }

    #[test]
    fn snippet_caps_long_input_on_char_boundaries() {
        let long = "ğ".repeat(100);
        let s = snippet(&long);
        assert_eq!(s.chars().count(), 64 + 3);
        assert_eq!(snippet("short"), "short");
    }
}
