//! What every Kafka client of the project shares.

use rdkafka::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// The context of a consumer that asks for end-of-partition events (`enable.partition.eof`):
/// librdkafka also reports them as client errors, which the default context logs at ERROR
/// level, so a restore reaching the end of its changelog looked like a failure in the logs.
/// Every other client error is still logged at ERROR.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuietEof;

impl ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        // librdkafka's "global error" path reports them as `Global(PartitionEOF)`.
        if !matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::error!(%error, reason, "librdkafka error");
        }
    }
}

impl ConsumerContext for QuietEof {}
