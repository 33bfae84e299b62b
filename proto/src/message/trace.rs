//! `sluice trace`: asking the broker what happened to one message, and
//! its answer, read from the broker's per-message event record.

use serde::{Deserialize, Serialize};

/// Which message (or messages) to trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TraceKey {
    /// The message stored at this place.
    At {
        /// The topic.
        topic: String,
        /// The offset.
        offset: u64,
    },
    /// Messages published with this message id.
    Id(String),
    /// Messages of this W3C trace (32 hex digits).
    Trace(String),
}

/// One stage's call on the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageTrace {
    /// The plugin.
    pub plugin: String,
    /// Its version (content hash).
    pub version: String,
    /// What it did: `pass`, `drop`, `replace`, `route`, `reject`,
    /// `dead-letter`, or `failed` (the stage failed on the batch).
    pub outcome: String,
    /// How long its call on the batch took, in microseconds.
    pub took_us: u64,
    /// Why the stage failed, if it did.
    #[serde(default)]
    pub error: Option<String>,
}

/// A place the message was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceTrace {
    /// The topic.
    pub topic: String,
    /// The offset.
    pub offset: u64,
    /// It was a duplicate (by message id) of the message already there.
    #[serde(default)]
    pub duplicate: bool,
    /// Set if it was stored as a dead letter: the reason.
    #[serde(default)]
    pub dead_letter: Option<String>,
}

/// One delivery of the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryTrace {
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
    /// The place delivered from.
    pub topic: String,
    /// Its offset.
    pub offset: u64,
    /// Who received it: the subscriber or member's principal.
    pub principal: String,
    /// The subscription's id on its connection, for a subscription.
    #[serde(default)]
    pub subscription: Option<u64>,
    /// The group, for a group member.
    #[serde(default)]
    pub group: Option<String>,
    /// The member's id in the group.
    #[serde(default)]
    pub member: Option<u64>,
    /// The delivery attempt (1 for the first; 0 for subscriptions).
    pub attempt: u32,
}

/// One settlement of the message by a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettleTrace {
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
    /// The group.
    pub group: String,
    /// The member that settled it, if one did.
    #[serde(default)]
    pub member: Option<u64>,
    /// The place settled.
    pub topic: String,
    /// Its offset.
    pub offset: u64,
    /// `ack`, `nack`, `dead-letter`, ...
    pub action: String,
}

/// A dead letter a consumer group stored for the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterTrace {
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
    /// The group.
    pub group: String,
    /// The last delivery attempt.
    pub attempt: u32,
    /// Why.
    pub reason: String,
    /// The dead-letter topic.
    pub topic: String,
    /// The dead letter's offset there.
    pub offset: u64,
}

/// What happened to one published message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageTrace {
    /// The topic it was published to.
    pub topic: String,
    /// Its message id, if it had one.
    #[serde(default)]
    pub id: Option<String>,
    /// Its W3C trace id, if it had a valid `traceparent`.
    #[serde(default)]
    pub trace_id: Option<String>,
    /// When the broker received it (ms since the Unix epoch).
    pub received_ms: i64,
    /// Who published it.
    pub principal: String,
    /// Each pipeline stage it went through, in order.
    #[serde(default)]
    pub stages: Vec<StageTrace>,
    /// `stored`, `routed`, `dead-lettered`, `rejected` or `dropped`.
    pub outcome: String,
    /// Why it was rejected, if it was.
    #[serde(default)]
    pub reason: Option<String>,
    /// Where it was stored.
    #[serde(default)]
    pub stored: Vec<PlaceTrace>,
    /// Its deliveries.
    #[serde(default)]
    pub deliveries: Vec<DeliveryTrace>,
    /// Its acks, nacks and other settlements.
    #[serde(default)]
    pub settlements: Vec<SettleTrace>,
    /// Dead letters consumer groups stored for it.
    #[serde(default)]
    pub dead_letters: Vec<DeadLetterTrace>,
}

/// The answer to a trace request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceReport {
    /// The messages found, oldest first.
    pub messages: Vec<MessageTrace>,
    /// Published messages the record covers now.
    pub record_messages: u64,
    /// When the oldest event it holds happened (ms since the Unix epoch).
    #[serde(default)]
    pub record_oldest_ms: Option<i64>,
    /// Set if the broker keeps no record (`[telemetry.record] enabled = false`).
    #[serde(default)]
    pub record_off: bool,
    /// Set if more messages matched than the broker reports (100): these
    /// are the oldest.
    #[serde(default)]
    pub truncated: bool,
}
