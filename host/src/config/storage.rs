//! `[storage]` and `[topics]`: how the log on disk is written and kept, and
//! the defaults a new topic starts with.

use std::time::Duration;

use serde::Deserialize;

/// When a publish counts as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// fsync before the ack; publishes waiting at the same moment share one
    /// fsync (group commit). Survives power loss.
    #[default]
    Always,
    /// fsync every `fsync_interval`; acked after the write reaches the OS.
    /// Survives a broker crash; power loss can lose the last interval.
    Interval,
    /// Never fsync (the OS writes back when it likes). Survives a broker
    /// crash only.
    Never,
}

/// Files of sealed segments kept open by default (`[storage] max_open_files`).
pub const DEFAULT_MAX_OPEN_FILES: usize = 1024;

/// `[storage]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `always`, `interval` or `never`.
    pub fsync: FsyncPolicy,
    /// Period of the `interval` policy.
    #[serde(with = "humantime_serde")]
    pub fsync_interval: Duration,
    /// Default segment size in bytes.
    pub segment_bytes: u64,
    /// How often retention limits are applied.
    #[serde(with = "humantime_serde")]
    pub retention_check_interval: Duration,
    /// Most memory one topic's de-duplication ids may take. When a topic
    /// reaches it, the oldest ids are forgotten before the window ends (a
    /// warning is logged and `sluice_dedup_evicted` counts them).
    pub dedup_max_bytes: usize,
    /// Most files of sealed segments kept open at once; the least recently
    /// read are closed and opened again when needed.
    pub max_open_files: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            fsync: FsyncPolicy::Always,
            fsync_interval: Duration::from_millis(100),
            segment_bytes: 64 * 1024 * 1024,
            retention_check_interval: Duration::from_secs(30),
            dedup_max_bytes: 64 * 1024 * 1024,
            max_open_files: DEFAULT_MAX_OPEN_FILES,
        }
    }
}

/// `[topics]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Create a topic on its first publish.
    pub auto_create: bool,
    /// Default retention of new topics.
    pub retention: RetentionConfig,
    /// Default de-duplication window of new topics: a publish whose message
    /// id was seen this recently is acked with the first offset and not
    /// stored again. "0s" turns it off.
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    /// Default time-to-live of messages in new topics, counted from when
    /// each is due; absent: messages do not expire unless they say so.
    #[serde(with = "humantime_serde")]
    pub default_ttl: Option<Duration>,
    /// Whether consumer groups of new topics send the messages that
    /// expired before they were delivered to the dead-letter topic.
    pub dead_letter_expired: bool,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            auto_create: true,
            retention: RetentionConfig::default(),
            dedup_window: Duration::from_secs(120),
            default_ttl: None,
            dead_letter_expired: false,
        }
    }
}

/// Retention limits; absent means unlimited.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Remove segments whose newest message is older than this.
    #[serde(with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// Keep about this many bytes per topic.
    pub max_bytes: Option<u64>,
    /// Keep about this many messages per topic.
    pub max_messages: Option<u64>,
}
