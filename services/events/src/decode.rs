//! Bytes to typed records and back, with errors that name the offending field.
//!
//! A record that fails here goes to the service's dead-letter queue; the error text becomes its
//! `error` header, so it must say *where* the record is wrong (`items[0].quantity: ...`), not
//! just that it is.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use thiserror::Error;

use crate::click::ClickEvent;
use crate::order::OrderEvent;
use crate::validate::{Validate, ValidationError};

/// A record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Not valid JSON, or JSON of the wrong shape (missing field, wrong type, unknown enum
    /// value, float money, ...). `path` is where, e.g. `event_type` or `items[0].unit_price`;
    /// `(root)` when the problem is the document itself.
    #[error("{path}: {message}")]
    Malformed { path: String, message: String },
    /// Well-formed, but breaks a contract rule (empty id, zero quantity, ...).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

impl DecodeError {
    /// JSON path of the offending field (for a dead-letter header).
    pub fn field_path(&self) -> &str {
        match self {
            Self::Malformed { path, .. } => path,
            Self::Invalid(v) => &v.field,
        }
    }

    /// Converts a path-tracking serde error, prefixing `prefix` (e.g. `payload`) to the path.
    pub(crate) fn from_path_error(
        prefix: &str,
        err: serde_path_to_error::Error<serde_json::Error>,
    ) -> Self {
        let message = err.inner().to_string();
        let mut parts: Vec<String> = Vec::new();
        if !prefix.is_empty() {
            parts.push(prefix.to_owned());
        }
        // A syntax error has no field; its message carries line and column instead.
        let syntax = !err.inner().is_data();
        let path = err.path().to_string();
        if path != "." && !syntax {
            parts.push(path);
        }
        // serde reports a missing field at its parent; naming the field itself is more useful.
        if let Some(field) = missing_field_name(&message) {
            parts.push(field.to_owned());
        }
        let path = if parts.is_empty() {
            "(root)".to_owned()
        } else {
            parts.join(".")
        };
        Self::Malformed { path, message }
    }
}

/// Extracts `x` from serde's stable "missing field `x`" message.
fn missing_field_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split_once('`').map(|(name, _)| name)
}

/// A value could not be encoded (only possible for types whose serialization can fail; the
/// contract types here never do, but callers should not have to `unwrap`).
#[derive(Debug, Error)]
#[error("cannot encode record: {0}")]
pub struct EncodeError(#[from] serde_json::Error);

/// Decodes and validates any contract type from JSON bytes.
pub fn decode<T: DeserializeOwned + Validate>(bytes: &[u8]) -> Result<T, DecodeError> {
    let value: T = decode_unvalidated(bytes)?;
    value.validate()?;
    Ok(value)
}

/// Decodes JSON bytes with path-aware errors but without contract checks.
pub fn decode_unvalidated<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| DecodeError::from_path_error("", e))?;
    // Reject trailing garbage ("{...}xyz"): a concatenated or truncated write is a producer bug.
    de.end().map_err(|e| DecodeError::Malformed {
        path: "(root)".to_owned(),
        message: e.to_string(),
    })?;
    Ok(value)
}

/// Deserializes an already-parsed JSON value; `prefix` is prepended to error paths so a field
/// inside an envelope is reported with its full path (`payload.after.amount`).
pub fn decode_value<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(|e| DecodeError::from_path_error(prefix, e))
}

/// Decodes and validates a [`ClickEvent`].
pub fn decode_click(bytes: &[u8]) -> Result<ClickEvent, DecodeError> {
    decode(bytes)
}

/// Decodes and validates an [`OrderEvent`].
pub fn decode_order(bytes: &[u8]) -> Result<OrderEvent, DecodeError> {
    decode(bytes)
}

/// Encodes any contract type as compact JSON.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    Ok(serde_json::to_vec(value)?)
}

/// Encodes a [`ClickEvent`].
pub fn encode_click(event: &ClickEvent) -> Result<Vec<u8>, EncodeError> {
    encode(event)
}

/// Encodes an [`OrderEvent`].
pub fn encode_order(event: &OrderEvent) -> Result<Vec<u8>, EncodeError> {
    encode(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_field_name_is_extracted() {
        assert_eq!(
            missing_field_name("missing field `order_id` at line 1 column 5"),
            Some("order_id")
        );
        assert_eq!(missing_field_name("invalid type: integer"), None);
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        let err = decode_unvalidated::<Value>(br#"{"a":1}xyz"#).err();
        assert!(
            matches!(err, Some(DecodeError::Malformed { ref path, .. }) if path == "(root)"),
            "{err:?}"
        );
    }
}
