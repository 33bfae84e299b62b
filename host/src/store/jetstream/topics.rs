//! Which topics exist, as every node of a cluster sees them: the
//! `sluice-topics` key-value bucket holds one entry per topic (key: its
//! stream's name, value: its name and settings), and each node keeps a
//! cache of it up to date from the bucket's watch. A topic's incarnation
//! is the revision of the entry that created it, so a topic deleted and
//! created again is told apart on every node.
//!
//! A topic is created stream first, entry second, and deleted entry first,
//! stream second: an entry always names a stream that exists or existed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::store::api::{TopicMeta, TopicSettings};
use crate::store::registry::FanoutCache;

/// The value of a topic's entry in the bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TopicEntryValue {
    /// The topic's name.
    pub name: String,
    /// Its settings.
    pub settings: TopicSettings,
}

/// A topic as this node knows it.
pub(super) struct Topic {
    /// Its name.
    pub name: Arc<str>,
    /// Its stream.
    pub stream: String,
    /// The subject its messages are published on.
    pub subject: String,
    /// The revision of the entry that created it.
    pub incarnation: u64,
    /// Its settings.
    pub settings: TopicSettings,
    /// The oldest offset stored, as last seen.
    pub start_offset: AtomicU64,
    /// One past the last offset this node's tail has seen.
    pub committed_end: AtomicU64,
    /// Which feeds want it.
    pub fanout: FanoutCache,
    /// Whether its tail was started (once a feed wanted it).
    pub tailing: AtomicBool,
    /// Whether a publish through this node's server reached its stream:
    /// until then the stream's subject may not be known there yet.
    pub reachable: AtomicBool,
    /// Stops its tail.
    pub stop: CancellationToken,
}

impl Topic {
    /// The topic now.
    pub fn meta(&self) -> TopicMeta {
        TopicMeta {
            name: self.name.clone(),
            incarnation: self.incarnation,
            start_offset: self.start_offset.load(Ordering::Acquire),
            committed_end: self.committed_end.load(Ordering::Acquire),
            default_ttl_ms: self.settings.default_ttl_ms,
            dead_letter_expired: self.settings.dead_letter_expired,
        }
    }
}

/// The cache: topics by name.
#[derive(Default)]
pub(super) struct Topics {
    by_name: HashMap<String, Arc<Topic>>,
}

/// What applying one entry of the bucket changed.
pub(super) enum Change {
    /// Nothing (an entry seen before).
    None,
    /// A topic appeared; a topic it replaced, if any, is in `replaced`.
    Created {
        topic: Arc<Topic>,
        replaced: Option<Arc<Topic>>,
    },
    /// A topic went away.
    Deleted(Arc<Topic>),
}

impl Topics {
    /// The topic called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Topic>> {
        self.by_name.get(name)
    }

    /// Every topic.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Topic>> {
        self.by_name.values()
    }

    /// A topic's entry, put at `revision`. An entry older than the topic
    /// known by that name changes nothing.
    pub fn put(
        &mut self,
        stream: &str,
        value: TopicEntryValue,
        revision: u64,
        committed_end: u64,
        start_offset: u64,
    ) -> Change {
        if let Some(known) = self.by_name.get(&value.name) {
            if known.incarnation >= revision {
                return Change::None;
            }
        }
        let topic = Arc::new(Topic {
            name: Arc::from(value.name.as_str()),
            stream: stream.to_owned(),
            subject: crate::nats::names::subject(stream),
            incarnation: revision,
            settings: value.settings,
            start_offset: AtomicU64::new(start_offset),
            committed_end: AtomicU64::new(committed_end),
            fanout: FanoutCache::default(),
            tailing: AtomicBool::new(false),
            reachable: AtomicBool::new(false),
            stop: CancellationToken::new(),
        });
        let replaced = self.by_name.insert(value.name, topic.clone());
        if let Some(old) = &replaced {
            old.stop.cancel();
        }
        Change::Created { topic, replaced }
    }

    /// The entry of stream `stream` was deleted at `revision`.
    pub fn delete(&mut self, stream: &str, revision: u64) -> Change {
        let Some(name) = self
            .by_name
            .iter()
            .find(|(_, t)| t.stream == stream && t.incarnation < revision)
            .map(|(name, _)| name.clone())
        else {
            return Change::None;
        };
        match self.by_name.remove(&name) {
            Some(topic) => {
                topic.stop.cancel();
                Change::Deleted(topic)
            }
            None => Change::None,
        }
    }

    /// Forgets every topic (the store stops).
    pub fn clear(&mut self) {
        for topic in self.by_name.values() {
            topic.stop.cancel();
        }
        self.by_name.clear();
    }
}

#[cfg(test)]
mod tests {
    use sluice_proto::RetentionSpec;

    use super::*;

    fn value(name: &str) -> TopicEntryValue {
        TopicEntryValue {
            name: name.into(),
            settings: TopicSettings {
                retention: RetentionSpec::default(),
                segment_bytes: 1024,
                dedup_window_ms: 0,
                default_ttl_ms: None,
                dead_letter_expired: false,
            },
        }
    }

    #[test]
    fn entries_apply_once_and_in_revision_order() {
        let mut topics = Topics::default();
        assert!(matches!(
            topics.put("S", value("a"), 5, 0, 0),
            Change::Created { replaced: None, .. }
        ));
        // The same entry again (a watch restarted) changes nothing.
        assert!(matches!(topics.put("S", value("a"), 5, 0, 0), Change::None));
        // An older delete does not remove the newer topic.
        assert!(matches!(topics.delete("S", 4), Change::None));
        assert!(matches!(topics.delete("S", 6), Change::Deleted(_)));
        assert!(topics.get("a").is_none());
        // Created again: a new incarnation.
        let Change::Created { topic, .. } = topics.put("S", value("a"), 7, 0, 0) else {
            panic!("created");
        };
        assert_eq!(topic.incarnation, 7);
    }

    #[test]
    fn a_newer_entry_replaces_and_stops_the_old_topic() {
        let mut topics = Topics::default();
        let Change::Created { topic: old, .. } = topics.put("S", value("a"), 1, 0, 0) else {
            panic!("created");
        };
        let Change::Created { replaced, .. } = topics.put("S", value("a"), 3, 0, 0) else {
            panic!("replaced");
        };
        assert!(replaced.is_some());
        assert!(old.stop.is_cancelled());
    }
}
