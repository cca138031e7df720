//! The Kafka Connect schema that `JsonConverter` (`schemas.enable=true`) sends beside the
//! payload. Debezium's logical types (decimal scale, timestamp units) are only knowable from
//! it, so it is kept typed instead of being thrown away.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A Connect schema node: a struct with `fields`, an array with `items`, a map with
/// `keys`/`values`, or a primitive; `name` and `parameters` carry logical types.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConnectSchema {
    /// `struct`, `int64`, `bytes`, `string`, `float64`, ...
    #[serde(rename = "type", default)]
    pub schema_type: String,
    #[serde(default)]
    pub optional: bool,
    /// Logical type, e.g. `org.apache.kafka.connect.data.Decimal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Logical-type parameters; Connect writes them as strings (`"scale": "2"`).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub parameters: BTreeMap<String, Value>,
    /// Field name when this node is a member of a struct.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub fields: Vec<ConnectSchema>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Box<ConnectSchema>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Box<ConnectSchema>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Box<ConnectSchema>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
}

impl ConnectSchema {
    /// The struct member named `name`.
    pub fn field(&self, name: &str) -> Option<&ConnectSchema> {
        self.fields
            .iter()
            .find(|f| f.field.as_deref() == Some(name))
    }

    /// A parameter as text (numbers are rendered), e.g. `parameter("scale")`.
    pub fn parameter(&self, key: &str) -> Option<String> {
        match self.parameters.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// The `scale` parameter of a decimal schema.
    pub fn decimal_scale(&self) -> Option<u32> {
        self.parameter("scale")?.parse().ok()
    }

    /// True when the logical type name is `name`.
    pub fn is_named(&self, name: &str) -> bool {
        self.name.as_deref() == Some(name)
    }
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
