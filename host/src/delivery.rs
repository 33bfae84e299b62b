//! What a receiver (a subscription or a consumer-group member) gets at a
//! time: a [`Chunk`] of [`Slice`]s of committed batches. Shared by the
//! broker, which makes chunks, the delivery plugins, which filter them,
//! and the server, which encodes them without copying payloads.

use std::sync::Arc;

use crate::store::{Record, StoredBatch};

/// Records to send: `batch.records[skip..]`.
#[derive(Debug, Clone)]
pub struct Slice {
    /// The batch.
    pub batch: Arc<StoredBatch>,
    /// Records at the front already sent.
    pub skip: usize,
    /// Delivery attempt (consumer groups); 0 for subscriptions.
    pub attempt: u32,
}

impl Slice {
    /// A slice of records of `topic` (not necessarily dense: some were
    /// filtered out).
    pub fn of(topic: &Arc<str>, incarnation: u64, records: Vec<Record>, attempt: u32) -> Slice {
        Slice {
            batch: Arc::new(StoredBatch {
                topic: topic.clone(),
                incarnation,
                records,
            }),
            skip: 0,
            attempt,
        }
    }

    /// The records to send.
    pub fn records(&self) -> &[Record] {
        &self.batch.records[self.skip.min(self.batch.records.len())..]
    }
}

/// What a receiver is handed at a time.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Records in order.
    pub slices: Vec<Slice>,
    /// Messages missed since the previous chunk (live subscriptions).
    pub dropped: u64,
}
