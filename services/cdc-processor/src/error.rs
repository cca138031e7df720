//! Why a change record cannot be mapped. The runtime dead-letters the record with this message
//! (the processor turns it into the runtime's record error of the same kind and text).

/// A record-level mapping failure: the record is at fault, never the replica.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The bytes are not a Debezium record this processor can read.
    #[error("cannot decode record: {0}")]
    Decode(String),
    /// A well-formed record whose content breaks the contract.
    #[error("invalid record: {0}")]
    Invalid(String),
}
