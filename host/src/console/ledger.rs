//! [`Ledger`]: what the console did to dead letters, kept in the topic
//! [`LEDGER`] (a log is not edited, so a redrive or discard is recorded
//! beside it) and read back incrementally: each look reads only the
//! entries appended since the last, so a page polled every second costs
//! nothing once caught up.

use std::collections::HashMap;

use bytes::Bytes;
use sluice_proto::StartPosition;

use super::{Console, ConsoleError};
use crate::error::BrokerError;
use crate::store::NewRecord;

/// Where redrives and discards are recorded.
pub const LEDGER: &str = "_sluice.console.dead-letters";
/// Entries read per fetch while catching up.
const READ_BATCH: u32 = 5_000;
const READ_BYTES: u32 = 4 * 1024 * 1024;

/// What was done to one dead letter.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Handled {
    /// The dead-letter topic.
    pub dlq: String,
    /// The dead letter's offset.
    pub offset: u64,
    /// `redriven` or `discarded`.
    pub action: String,
    /// The principal.
    pub by: String,
    pub at_ms: i64,
    /// Where a redrive stored it.
    #[serde(default)]
    pub to_topic: Option<String>,
    #[serde(default)]
    pub to_offset: Option<u64>,
}

/// The ledger read so far: the last action per dead letter.
#[derive(Debug, Default)]
pub struct Ledger {
    /// The next ledger offset to read.
    next: u64,
    /// By dead-letter topic, then offset.
    marks: HashMap<String, HashMap<u64, Handled>>,
}

impl Ledger {
    fn take(&mut self, payload: &[u8], offset: u64) {
        match serde_json::from_slice::<Handled>(payload) {
            Ok(h) => {
                self.marks
                    .entry(h.dlq.clone())
                    .or_default()
                    .insert(h.offset, h);
            }
            Err(e) => {
                tracing::warn!(offset, error = %e, "unreadable console ledger entry skipped")
            }
        }
    }
}

/// The last action on each dead letter of `dlq` that has one.
pub async fn marks(console: &Console, dlq: &str) -> Result<HashMap<u64, Handled>, ConsoleError> {
    let mut ledger = console.ledger.lock().await;
    let Some(meta) = console.broker.store().topic(LEDGER) else {
        return Ok(HashMap::new());
    };
    if ledger.next > meta.committed_end {
        // Deleted and made again: read it from its start.
        *ledger = Ledger::default();
    }
    loop {
        let from = ledger.next.max(meta.start_offset);
        let batch = console
            .broker
            .fetch(LEDGER, StartPosition::Offset(from), READ_BATCH, READ_BYTES)
            .await?;
        for m in &batch.messages {
            ledger.take(&m.payload, m.offset);
        }
        let done = batch.messages.is_empty() || batch.next_offset >= batch.end_offset;
        ledger.next = batch.next_offset.max(from);
        if done {
            break;
        }
    }
    Ok(ledger.marks.get(dlq).cloned().unwrap_or_default())
}

/// Appends an action (as the broker: its own bookkeeping, past every
/// pipeline).
pub async fn record(console: &Console, entry: &Handled) -> Result<(), ConsoleError> {
    let store = console.broker.store();
    let failed = |e| ConsoleError::Broker(BrokerError::store(LEDGER, e));
    store.ensure_topic(LEDGER).await.map_err(failed)?;
    let payload = serde_json::to_vec(entry)
        .map_err(|e| ConsoleError::Broker(BrokerError::Internal(e.to_string())))?;
    let record = NewRecord {
        key: Some(Bytes::from(entry.dlq.clone())),
        headers: Vec::new(),
        payload: Bytes::from(payload),
        id: None,
    };
    store
        .append(LEDGER, vec![record])
        .await
        .map_err(failed)?
        .await
        .map_err(failed)?;
    Ok(())
}
