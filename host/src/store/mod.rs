//! Durable storage of topics: the [`Store`] trait the broker reaches storage through, and
//! its local backend, [`LocalStore`]: a segmented, append-only log per topic, protected by
//! CRC32C, with a sparse offset/time index, crash recovery and retention.
//!
//! The log's entry point is [`TopicLog`]. Appends go to the page cache (no fsync); [`TopicLog::sync`]
//! makes them durable. Reads use positional reads and run concurrently with appends.
//!
//! # Layout
//!
//! This is an on-disk compatibility contract; change it only with a new record version.
//!
//! Each topic has its own directory holding pairs of files named after the segment's base
//! offset (the offset of its first record) as 20 zero-padded decimal digits:
//!
//! - `00000000000000000000.log`: the records of the segment, back to back.
//! - `00000000000000000000.idx`: its sparse index.
//!
//! Other files in the directory are ignored; a `.log` whose name is not 20 digits is an error.
//!
//! A record is framed as `u32 LE body_len | u32 LE crc32c(body) | body`, and the body is
//! (integers little-endian):
//!
//! ```text
//! u8  version (1)
//! u64 offset
//! i64 timestamp_ms
//! u32 key_len (u32::MAX = no key) | key
//! u16 header_count | per header: u16 name_len | name | u32 value_len | value   (UTF-8)
//! u16 id_len (u16::MAX = no id) | id                                          (UTF-8)
//! u32 payload_len | payload
//! ```
//!
//! A body whose inner lengths do not add up exactly to `body_len` is corrupt.
//!
//! An index entry is 16 bytes: `u32 LE offset - base | u32 LE file position | i64 LE
//! timestamp_ms` of a record. There is one for the first record of a segment and one
//! whenever at least `index_interval_bytes` were appended since the previous entry. Positions
//! are 32-bit, so segments are at most `u32::MAX` bytes.
//!
//! Offsets are dense across segments: a segment's base is the previous segment's last offset
//! plus one. Timestamps never decrease. Retention deletes whole segments from the front, so
//! the start offset moves up while the next offset never goes back.
//!
//! # Recovery
//!
//! On open, sealed segments trust their index after checking it (size a multiple of 16,
//! entries increasing, inside the file, first and last entries naming the offset, position
//! and timestamp of their records) and rebuild it by scanning otherwise. The newest segment
//! is scanned from its last good index entry; at the first torn or corrupt record the file is
//! truncated there, with a warning, and appends resume at the recovered next offset. The
//! entries in between are checked when a lookup starts from one: an entry that does not name
//! the record at its position is dropped from memory, with a warning, and the lookup starts
//! again from the entry before it.

mod api;
mod config;
mod cursor;
mod error;
pub mod feed;
mod files;
mod index;
pub mod jetstream;
pub mod journal;
pub mod local;
mod log;
mod record;
mod recovery;
mod registry;
mod segment;
mod write;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;

pub use api::{AppendTicket, Appended, Store, StoredBatch, TopicEvent, TopicMeta, TopicSettings};
pub use config::{LogConfig, Retention};
pub use error::StoreError;
pub use feed::Feed;
pub use files::Files;
pub use jetstream::JetStreamStore;
pub use local::{LocalOptions, LocalStore};
pub use log::{LogInfo, ReadBatch, RetentionOutcome, TopicLog};
pub use record::{NewRecord, Record};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
