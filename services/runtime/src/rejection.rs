//! Records the producer or the broker refuses (too large, invalid): known before sending where
//! the producer's own limit decides, learned from a failed transaction where the broker did.
//!
//! Processing is deterministic, so the replay of a failed transaction makes the refused record
//! again, byte for byte: [`Rejections::check`] then names it, and the engine dead-letters it
//! (an output) or the input that made it (a state write) instead of failing the transaction
//! again. Nothing is retried for ever, and nothing is dropped without a trace.

use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Headers, Message};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

/// The producer's `message.max.bytes` (librdkafka's default, set explicitly so the check here
/// and the producer agree).
pub const MAX_RECORD_BYTES: usize = 1_000_000;

/// librdkafka's largest per-record overhead in a v2 record batch (length, attributes,
/// timestamp and offset deltas, key and value lengths, header count).
const RECORD_OVERHEAD: usize = 36;
/// Per header: at most the two length varints.
const HEADER_OVERHEAD: usize = 10;

/// The size librdkafka compares with `message.max.bytes`, as an upper bound.
pub fn wire_size(key: Option<&[u8]>, payload: Option<&[u8]>, headers: usize) -> usize {
    RECORD_OVERHEAD + key.map_or(0, <[u8]>::len) + payload.map_or(0, <[u8]>::len) + headers
}

/// The bytes `headers` add to a record.
pub fn headers_size(headers: &impl Headers) -> usize {
    headers
        .iter()
        .map(|h| HEADER_OVERHEAD + h.key.len() + h.value.map_or(0, <[u8]>::len))
        .sum()
}

/// Identifies a record's content (within this process).
pub fn fingerprint(key: Option<&[u8]>, payload: Option<&[u8]>) -> u64 {
    let mut hasher = DefaultHasher::new();
    (key, payload).hash(&mut hasher);
    hasher.finish()
}

/// Errors that condemn the record itself, not the transaction, broker or network.
pub fn is_record_error(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidTimestamp
    )
}

/// One record the producer or broker refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub topic: String,
    pub partition: i32,
    pub fingerprint: u64,
    pub size: usize,
    pub code: RDKafkaErrorCode,
}

impl Refused {
    /// From a failed delivery report.
    pub fn of(message: &impl Message, code: RDKafkaErrorCode) -> Self {
        let headers = message.headers().map_or(0, headers_size);
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            fingerprint: fingerprint(message.key(), message.payload()),
            size: wire_size(message.key(), message.payload(), headers),
            code,
        }
    }

    fn reason(&self) -> String {
        format!(
            "{} refused this {}-byte record: {}",
            self.topic, self.size, self.code
        )
    }
}

/// What the producer and the broker refuse, for [`Self::check`] before a record is sent.
#[derive(Debug)]
pub struct Rejections {
    max_record_bytes: usize,
    refused: HashMap<(String, u64), String>,
}

impl Rejections {
    pub fn new(max_record_bytes: usize) -> Self {
        Self {
            max_record_bytes,
            refused: HashMap::new(),
        }
    }

    /// Why this record would be refused, if it would be.
    pub fn check(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: usize,
    ) -> Option<String> {
        let size = wire_size(key, payload, headers);
        if size > self.max_record_bytes {
            return Some(format!(
                "a {size}-byte record for {topic} exceeds the producer's message.max.bytes ({})",
                self.max_record_bytes
            ));
        }
        if self.refused.is_empty() {
            return None;
        }
        self.refused
            .get(&(topic.to_owned(), fingerprint(key, payload)))
            .cloned()
    }

    /// Learns the records refused in a failed transaction; true when any was not known yet
    /// (then the replay can go past them).
    ///
    /// A broker refuses a whole batch when it is too large, so of the records refused for
    /// their size only the largest of each topic partition is blamed: the one that made the
    /// batch too large, unless the batch was (the topic's `max.message.bytes` below the
    /// producer's); then the next failure blames the next, and after a few failures in a row
    /// recovery backs off like for any other failure.
    pub fn learn(&mut self, refused: Vec<Refused>) -> bool {
        let mut largest: HashMap<(String, i32), Refused> = HashMap::new();
        let mut blamed = Vec::new();
        for record in refused {
            if record.code != RDKafkaErrorCode::MessageSizeTooLarge {
                blamed.push(record);
                continue;
            }
            let slot = (record.topic.clone(), record.partition);
            match largest.get(&slot) {
                Some(held) if held.size >= record.size => {}
                _ => {
                    largest.insert(slot, record);
                }
            }
        }
        blamed.extend(largest.into_values());
        let mut new = false;
        for record in blamed {
            let reason = record.reason();
            new |= self
                .refused
                .insert((record.topic, record.fingerprint), reason)
                .is_none();
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(topic: &str, partition: i32, payload: &[u8], code: RDKafkaErrorCode) -> Refused {
        Refused {
            topic: topic.into(),
            partition,
            fingerprint: fingerprint(Some(b"k"), Some(payload)),
            size: wire_size(Some(b"k"), Some(payload), 0),
            code,
        }
    }

    #[test]
    fn the_producer_limit_is_known_before_sending() {
        let rejections = Rejections::new(100);
        let fits = vec![b'x'; 100 - RECORD_OVERHEAD - 1];
        assert_eq!(rejections.check("out", Some(b"k"), Some(&fits), 0), None);
        let reason = rejections
            .check("out", Some(b"k"), Some(&fits), 1)
            .expect("one byte too many");
        assert_eq!(
            reason,
            "a 101-byte record for out exceeds the producer's message.max.bytes (100)"
        );
    }

    #[test]
    fn a_refused_record_is_recognised_when_made_again() {
        let mut rejections = Rejections::new(MAX_RECORD_BYTES);
        let code = RDKafkaErrorCode::InvalidTimestamp;
        assert!(rejections.learn(vec![refused("out", 0, b"bad", code)]));
        assert!(
            !rejections.learn(vec![refused("out", 0, b"bad", code)]),
            "known"
        );
        let reason = rejections.check("out", Some(b"k"), Some(b"bad"), 0);
        assert!(
            reason
                .as_deref()
                .is_some_and(|r| r.starts_with("out refused this 40-byte record")),
            "{reason:?}"
        );
        assert_eq!(rejections.check("other", Some(b"k"), Some(b"bad"), 0), None);
        assert_eq!(rejections.check("out", Some(b"k"), Some(b"good"), 0), None);
    }

    #[test]
    fn of_a_batch_too_large_only_the_largest_record_per_partition_is_blamed() {
        let mut rejections = Rejections::new(MAX_RECORD_BYTES);
        let too_large = RDKafkaErrorCode::MessageSizeTooLarge;
        let big = vec![b'x'; 5000];
        assert!(rejections.learn(vec![
            refused("out", 0, b"small", too_large),
            refused("out", 0, &big, too_large),
            refused("out", 1, b"alone", too_large),
            refused("out", 0, b"invalid", RDKafkaErrorCode::InvalidRecord),
        ]));
        let check = |payload: &[u8]| rejections.check("out", Some(b"k"), Some(payload), 0);
        assert!(check(&big).is_some());
        assert!(check(b"alone").is_some());
        assert!(check(b"invalid").is_some());
        assert_eq!(check(b"small"), None, "an innocent batch mate");
    }

    #[test]
    fn record_errors_are_told_from_the_others() {
        assert!(is_record_error(RDKafkaErrorCode::MessageSizeTooLarge));
        assert!(is_record_error(RDKafkaErrorCode::InvalidRecord));
        assert!(!is_record_error(RDKafkaErrorCode::MessageTimedOut));
        assert!(
            !is_record_error(RDKafkaErrorCode::InvalidMessage),
            "CRC: retry"
        );
        assert!(!is_record_error(RDKafkaErrorCode::PurgeQueue));
        assert!(!is_record_error(RDKafkaErrorCode::NotEnoughReplicas));
    }
}
