//! Rules serde cannot express (non-empty ids, positive quantities, ...), checked after
//! decoding so that a record which parses but makes no sense still goes to the dead-letter
//! queue with the field named, instead of corrupting state downstream.

use thiserror::Error;

use crate::money::Money;

/// A decoded record broke a contract rule. `field` is a JSON path such as `items[0].quantity`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    /// JSON path of the offending field.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ValidationError {
    /// A rule violation at `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Contract checks for a decoded value.
pub trait Validate {
    /// `Ok` when the value satisfies the contract.
    fn validate(&self) -> Result<(), ValidationError>;
}

/// Ids are keys for dedup, partitioning and Redis; blank ones would merge unrelated records.
pub(crate) fn non_empty(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    Ok(())
}

/// Same as [`non_empty`] for optional ids: absent is fine, present-but-blank is not.
pub(crate) fn non_empty_opt(field: &str, value: Option<&str>) -> Result<(), ValidationError> {
    value.map_or(Ok(()), |v| non_empty(field, v))
}

/// Pre-1970 event times only come from unit bugs (seconds vs ms) or garbage, and negative
/// values invite overflow in window arithmetic.
pub(crate) fn non_negative_ts(field: &str, millis: i64) -> Result<(), ValidationError> {
    if millis < 0 {
        return Err(ValidationError::new(
            field,
            format!("event time must not be negative, got {millis}"),
        ));
    }
    Ok(())
}

pub(crate) fn non_negative_money(field: &str, amount: Money) -> Result<(), ValidationError> {
    if amount.is_negative() {
        return Err(ValidationError::new(
            field,
            format!("must not be negative, got {amount}"),
        ));
    }
    Ok(())
}

pub(crate) fn window_order(start: i64, end: i64) -> Result<(), ValidationError> {
    if end < start {
        return Err(ValidationError::new(
            "window_end",
            format!("must not be before window_start ({end} < {start})"),
        ));
    }
    Ok(())
}
