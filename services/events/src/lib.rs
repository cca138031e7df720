//! Event, alert and feature contracts shared by every TrendStream service.
//!
//! Everything that crosses a Kafka topic or a Redis key is defined here once, so that producers
//! (loadgen, cdc-processor) and consumers (the processors, feature-api) cannot drift apart.
//!
//! Conventions, applied to every type:
//! - event time is integer milliseconds since the Unix epoch ([`time`]); RFC 3339 strings are
//!   accepted on input, integers are always written;
//! - money is never a float ([`money`]): amounts are written as decimal strings;
//! - unknown fields are ignored so producers can add fields without breaking consumers;
//! - decoding ([`mod@decode`]) reports the JSON path of the offending field, so a record sent to a
//!   dead-letter queue says what was wrong with it.

pub mod click;
pub mod debezium;
pub mod decode;
pub mod feature_store;
pub mod inventory;
pub mod money;
pub mod order;
pub mod output;
pub mod partitioning;
pub mod time;
pub mod validate;
mod wire_enum;

pub use click::{ClickEvent, ClickEventType};
pub use decode::{
    DecodeError, EncodeError, decode, decode_click, decode_order, encode, encode_click,
    encode_order,
};
pub use inventory::{InventoryChange, InventoryChangeKind};
pub use money::{Currency, CurrencyError, Money, MoneyError};
pub use order::{OrderEvent, OrderItem, OrderStatus};
pub use output::{
    CategoryRevenue, FraudAlert, RevenueWindow, SessionSummary, Severity, UserFeatures,
};
pub use time::{EventTime, TimeError};
pub use validate::{Validate, ValidationError};
