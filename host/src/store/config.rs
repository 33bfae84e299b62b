//! Tuning knobs of a topic log: segment size, index density and retention.

/// Retention limits; `None` means unlimited. Whole old segments are removed, never the active one.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Retention {
    /// Remove sealed segments whose newest record is older than this many milliseconds.
    pub max_age_ms: Option<u64>,
    /// Remove the oldest sealed segments while the rest still hold at least this many bytes.
    pub max_bytes: Option<u64>,
    /// Remove the oldest sealed segments while the rest still hold at least this many messages.
    pub max_messages: Option<u64>,
}

/// How a topic log lays out its files and how much it keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogConfig {
    /// A segment rolls over when appending would take it past this size (a record larger than
    /// this still goes into a fresh segment on its own). Capped at `u32::MAX` because index
    /// positions are 32-bit.
    pub segment_bytes: u64,
    /// One sparse index entry per this many bytes of log.
    pub index_interval_bytes: u64,
    /// What `apply_retention` removes.
    pub retention: Retention,
    /// fsync a segment as it is sealed, before the next one takes records,
    /// so that what a power loss leaves is always a prefix of the log. On
    /// under `fsync = "always"`, where it costs little (the group commits
    /// have synced most of the segment). Off under `interval` and `never`:
    /// there the sealed segment is fsynced by the next periodic sync,
    /// off the append path, instead of stalling every append while a whole
    /// segment (64 MiB by default) goes to disk.
    pub sync_on_roll: bool,
}

impl LogConfig {
    /// Default segment size: 64 MiB.
    pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
    /// Default index density: one entry per 4 KiB.
    pub const DEFAULT_INDEX_INTERVAL_BYTES: u64 = 4096;

    /// The segment size actually used: index positions are u32, so larger values are capped.
    pub(crate) fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes.min(u64::from(u32::MAX))
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: Self::DEFAULT_SEGMENT_BYTES,
            index_interval_bytes: Self::DEFAULT_INDEX_INTERVAL_BYTES,
            retention: Retention::default(),
            sync_on_roll: true,
        }
    }
}
