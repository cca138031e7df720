//! What the generator hands to the writers: one record for one topic partition.

use serde::Serialize;

/// The two topics loadgen writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    /// ClickEvents (`--clicks-topic`, default `clickstream`).
    Clicks,
    /// OrderEvents (`--orders-topic`, default `orders`).
    Orders,
}

impl Topic {
    /// Both topics, in the order watermark records are written.
    pub const ALL: [Topic; 2] = [Topic::Clicks, Topic::Orders];

    /// Index into per-topic arrays.
    pub const fn index(self) -> usize {
        match self {
            Topic::Clicks => 0,
            Topic::Orders => 1,
        }
    }
}

/// Partition count of each topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Partitions {
    pub clicks: i32,
    pub orders: i32,
}

impl Partitions {
    /// The count for `topic`.
    pub const fn of(self, topic: Topic) -> i32 {
        match topic {
            Topic::Clicks => self.clicks,
            Topic::Orders => self.orders,
        }
    }
}

/// Kinds of undecodable or invalid payloads (`--poison-rate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PoisonKind {
    /// Not JSON at all.
    Garbage,
    /// An event cut off in the middle (a torn write).
    TruncatedJson,
    /// A field of the wrong JSON type (`"user_id": 12345`).
    WrongType,
    /// Money as a JSON float (`"amount": 12.5`), which the contract rejects.
    FloatMoney,
    /// An enum value the contract does not know (`"event_type": "teleport"`).
    UnknownVariant,
    /// Well-formed but breaking a validation rule (empty user id, zero quantity).
    Invalid,
}

impl PoisonKind {
    /// Every kind.
    pub const ALL: [PoisonKind; 6] = [
        PoisonKind::Garbage,
        PoisonKind::TruncatedJson,
        PoisonKind::WrongType,
        PoisonKind::FloatMoney,
        PoisonKind::UnknownVariant,
        PoisonKind::Invalid,
    ];
}

/// How a record relates to the event-time order of its partition when it was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// Not older than anything produced before it to its partition.
    InOrder,
    /// Older than the partition's newest event, but within the out-of-orderness bound.
    OutOfOrder,
    /// At or behind the partition's watermark (`max - bound - 1`): a late event.
    Late,
    /// An undecodable or invalid payload.
    Poison(PoisonKind),
    /// A final watermark record (one per partition of each topic).
    Watermark,
}

/// One record, ready to produce and to write to the event file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: Topic,
    pub partition: i32,
    /// The user id.
    pub key: String,
    /// The exact payload.
    pub value: String,
    /// Event time of a valid event; `None` for poison pills.
    pub ts: Option<i64>,
    pub kind: RecordKind,
}
