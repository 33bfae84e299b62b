//! [`Store`]: everything the broker needs from storage, as one trait.
//!
//! The broker, the consumer groups and the server reach topics only through
//! this trait, so a replicated backend can stand where the local log stands
//! today ([`super::LocalStore`]). The trait is async and object safe: the
//! broker holds an `Arc<dyn Store>`.
//!
//! The contract, which every backend keeps:
//! - Offsets are dense per topic incarnation, from 0; a record is visible to
//!   readers ([`Store::read`], feeds) only once it is committed (durable
//!   under the topic's fsync policy).
//! - [`Store::append`] is called in the order the caller wants records
//!   stored: two appends to one topic made one after the other (the first
//!   call returned) are stored in that order. Its ticket resolves when the
//!   batch is committed.
//! - A topic deleted and created again is a new incarnation: readers and
//!   groups compare [`TopicMeta::incarnation`] to tell.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sluice_proto::{Pattern, RetentionSpec, TopicInfo};
use tokio::sync::{broadcast, watch};

use super::error::StoreError;
use super::feed::Feed;
pub use super::feed::StoredBatch;
use super::log::ReadBatch;
use super::record::NewRecord;

/// Settings chosen when a topic is created, kept with it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TopicSettings {
    /// What retention removes.
    pub retention: RetentionSpec,
    /// Size at which a segment is sealed (local store).
    pub segment_bytes: u64,
    /// Message ids are remembered this long (0: no de-duplication).
    #[serde(default = "default_dedup_window_ms")]
    pub dedup_window_ms: u64,
    /// Time-to-live of messages published without one (ms).
    #[serde(default)]
    pub default_ttl_ms: Option<u64>,
    /// Whether consumer groups dead-letter the messages that expired
    /// before they were delivered.
    #[serde(default)]
    pub dead_letter_expired: bool,
}

impl TopicSettings {
    /// Settings of topics created without their own, from `[topics]` and
    /// `[storage]`.
    pub fn defaults(config: &crate::config::Config) -> TopicSettings {
        let r = &config.topics.retention;
        TopicSettings {
            retention: RetentionSpec {
                max_age_ms: r.max_age.map(|d| d.as_millis() as u64),
                max_bytes: r.max_bytes,
                max_messages: r.max_messages,
            },
            segment_bytes: config.storage.segment_bytes,
            dedup_window_ms: config.topics.dedup_window.as_millis() as u64,
            default_ttl_ms: config.topics.default_ttl.map(|d| d.as_millis() as u64),
            dead_letter_expired: config.topics.dead_letter_expired,
        }
    }
}

/// Topics created before de-duplication existed get the default window.
fn default_dedup_window_ms() -> u64 {
    120_000
}

/// A topic as the store knows it at the moment of asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    /// The topic's name.
    pub name: Arc<str>,
    /// Which life of the topic: changes when it is deleted and created again.
    pub incarnation: u64,
    /// The oldest offset still stored.
    pub start_offset: u64,
    /// Every offset below this is committed.
    pub committed_end: u64,
    /// Time-to-live given to messages published without one (ms).
    pub default_ttl_ms: Option<u64>,
    /// Whether consumer groups dead-letter messages that expired.
    pub dead_letter_expired: bool,
}

/// A topic created or deleted, for pattern subscriptions and groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicEvent {
    /// A topic (incarnation) was created.
    Created(TopicMeta),
    /// A topic (incarnation) was deleted.
    Deleted {
        /// The topic.
        name: Arc<str>,
        /// The incarnation that was deleted.
        incarnation: u64,
    },
}

/// What happened to one record of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored at `offset`, timestamped `timestamp_ms`.
    Stored {
        /// Its offset.
        offset: u64,
        /// Milliseconds since the Unix epoch, assigned by the store.
        timestamp_ms: i64,
    },
    /// Its id was seen within the topic's de-duplication window: the first
    /// copy's offset. Nothing was stored.
    Duplicate {
        /// The first copy's offset.
        offset: u64,
    },
}

impl Appended {
    /// The offset of the record or of its first copy.
    pub fn offset(&self) -> u64 {
        match self {
            Appended::Stored { offset, .. } | Appended::Duplicate { offset } => *offset,
        }
    }

    /// True for a duplicate.
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Appended::Duplicate { .. })
    }
}

/// Resolves when an appended batch is committed, with one [`Appended`] per
/// record in the order given.
pub type AppendTicket = BoxFuture<'static, Result<Vec<Appended>, StoreError>>;

/// Storage of topics, behind which the local log or a replicated engine
/// stands.
pub trait Store: Send + Sync + 'static {
    /// Creates a topic with `settings`; [`StoreError::TopicExists`] if it is
    /// there already.
    fn create_topic(
        &self,
        name: &str,
        settings: TopicSettings,
    ) -> BoxFuture<'_, Result<TopicMeta, StoreError>>;

    /// The topic, created with the default settings if it is missing.
    fn ensure_topic(&self, name: &str) -> BoxFuture<'_, Result<TopicMeta, StoreError>>;

    /// Deletes a topic and everything stored in it.
    fn delete_topic(&self, name: &str) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The topic now, if it exists.
    fn topic(&self, name: &str) -> Option<TopicMeta>;

    /// The topics whose names match `pattern`, by name.
    fn topics(&self, pattern: &Pattern) -> Vec<TopicMeta>;

    /// What `topics info` shows of one topic.
    fn info(&self, name: &str) -> BoxFuture<'_, Result<TopicInfo, StoreError>>;

    /// Topics created and deleted from now on.
    fn events(&self) -> broadcast::Receiver<TopicEvent>;

    /// Changes after every commit of any topic (a wake-up for readers that
    /// poll, such as consumer groups).
    fn commits(&self) -> watch::Receiver<u64>;

    /// Appends a non-empty batch to an existing topic. The records are
    /// ordered behind every earlier append to the topic once this future
    /// completes;
    /// the ticket resolves when they are committed.
    fn append(
        &self,
        topic: &str,
        records: Vec<NewRecord>,
    ) -> BoxFuture<'_, Result<AppendTicket, StoreError>>;

    /// Reads committed records of `topic` from `from` (at most
    /// `max_records`, and about `max_bytes` of payload, at least one
    /// record). `incarnation` guards against reading a re-created topic.
    fn read(
        &self,
        topic: &str,
        incarnation: u64,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<ReadBatch, StoreError>>;

    /// Removes what lies wholly below offset `before`, as far as the
    /// backend keeps such units (whole sealed segments on one machine;
    /// messages of a stream that allows purging in cluster mode). The
    /// schedule trims its own log with it; users' topics have retention.
    fn trim(&self, topic: &str, before: u64) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The first offset whose timestamp is at or after `timestamp_ms`.
    fn offset_for_time(
        &self,
        topic: &str,
        timestamp_ms: i64,
    ) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Resolves once what this node knows of the topics matching `pattern`
    /// is as recent as the storage was when called: their committed ends
    /// and feeds include every record stored before. The local store is
    /// always current; a replicated one follows its streams and may lag a
    /// moment behind. A subscription from the latest position waits for it,
    /// so it starts after what was stored before it was made.
    fn catch_up(&self, pattern: &Pattern) -> BoxFuture<'_, Result<(), StoreError>>;

    /// A feed of batches committed from now on to topics matching
    /// `pattern`, holding at most `max_queued` messages (beyond, batches are
    /// dropped for this feed and counted).
    fn feed(&self, pattern: Pattern, max_queued: usize) -> Feed;

    /// Live feeds.
    fn feeds(&self) -> usize;

    /// Commits what is pending, stops background work and makes everything
    /// durable. Appends made afterwards fail.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}
