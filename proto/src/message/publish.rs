//! Publishing: the messages a client publishes and the acknowledgement that
//! says, message by message, where each was stored (or why it was not).
//! The compact layout of the same is in `compact.rs`.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A message as published.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PublishMessage {
    /// Destination topic.
    pub topic: String,
    /// Optional key (ordering and routing).
    #[serde(default)]
    pub key: Option<Bytes>,
    /// Headers, in order; names may repeat.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The body.
    pub payload: Bytes,
    /// Optional producer-chosen id for de-duplication.
    #[serde(default)]
    pub id: Option<String>,
}

/// Publish one message or a batch. The batch may span topics; messages of
/// one topic are stored in batch order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Publish {
    /// The messages.
    pub messages: Vec<PublishMessage>,
}

/// Where one published message was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAt {
    /// The topic.
    pub topic: String,
    /// Its offset there.
    pub offset: u64,
    /// True when this is an earlier copy found by message-id de-duplication.
    #[serde(default)]
    pub duplicate: bool,
    /// Set when the message is delayed: when it is due (milliseconds since
    /// the Unix epoch). It waits in the broker's schedule and `offset` is
    /// its place there; it takes its offset in `topic` when due. Not
    /// written when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_at_ms: Option<i64>,
}

/// What happened to one published message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageOutcome {
    /// Stored at one or more places (a plugin may route or split it).
    Stored(Vec<StoredAt>),
    /// A plugin dropped it: stored nowhere.
    Dropped,
    /// A plugin rejected it with this reason: stored nowhere.
    Rejected(String),
    /// A plugin (or a failing pipeline stage) sent it to the dead-letter topic.
    DeadLettered {
        /// Why.
        reason: String,
        /// Where the dead letter is.
        at: StoredAt,
    },
}

/// The acknowledgement of a publish: one outcome per message, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishAck {
    /// One per published message.
    pub outcomes: Vec<MessageOutcome>,
}
