//! Topic administration: creating a topic with its retention, and what the
//! broker reports about one.

use serde::{Deserialize, Serialize};

/// Retention limits of a topic; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionSpec {
    /// Remove segments whose newest message is older than this (ms).
    #[serde(default)]
    pub max_age_ms: Option<u64>,
    /// Remove the oldest segments while the rest is still at least this large.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Remove the oldest segments while the rest still holds at least this many messages.
    #[serde(default)]
    pub max_messages: Option<u64>,
}

/// Create a topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateTopic {
    /// The topic name.
    pub name: String,
    /// Retention; `None` takes the broker's defaults.
    #[serde(default)]
    pub retention: Option<RetentionSpec>,
    /// Segment size; `None` takes the broker's default.
    #[serde(default)]
    pub segment_bytes: Option<u64>,
    /// How long message ids are remembered for de-duplication (ms; 0 turns
    /// it off); `None` takes the broker's default.
    #[serde(default)]
    pub dedup_window_ms: Option<u64>,
    /// Time-to-live of messages published without one (ms; 0: they do
    /// not expire); `None` takes the broker's default.
    #[serde(default)]
    pub default_ttl_ms: Option<u64>,
    /// Whether consumer groups send messages that expired before they were
    /// delivered to the dead-letter topic (reason `expired`); `None` takes
    /// the broker's default.
    #[serde(default)]
    pub dead_letter_expired: Option<bool>,
}

/// What the broker knows about one topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicInfo {
    /// The name.
    pub name: String,
    /// The oldest offset still stored.
    pub start_offset: u64,
    /// The offset the next message will get.
    pub next_offset: u64,
    /// Messages stored (`next_offset - start_offset`).
    pub messages: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// Segment files.
    pub segments: u32,
    /// Time of the oldest stored message.
    pub oldest_timestamp_ms: Option<i64>,
    /// Time of the newest stored message.
    pub newest_timestamp_ms: Option<i64>,
    /// Retention in force.
    pub retention: RetentionSpec,
    /// Segment size in force.
    pub segment_bytes: u64,
    /// De-duplication window in force (ms; 0 is off).
    #[serde(default)]
    pub dedup_window_ms: u64,
    /// Delayed messages waiting to be put in the topic.
    #[serde(default)]
    pub waiting: u64,
    /// Time-to-live of messages published without one (ms; none: they
    /// do not expire).
    #[serde(default)]
    pub default_ttl_ms: Option<u64>,
    /// Whether a consumer group sends the messages that expired before it
    /// delivered them to the dead-letter topic (reason `expired`).
    #[serde(default)]
    pub dead_letter_expired: bool,
}
