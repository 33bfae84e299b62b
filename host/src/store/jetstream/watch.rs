//! Keeping a node's topic cache current from the topics bucket: a first
//! load at open, then the bucket's watch for as long as the store runs
//! (started again from the last revision seen when it fails). Every change
//! becomes a [`TopicEvent`](crate::store::TopicEvent) and starts or stops
//! the topic's tail.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures_util::StreamExt;

use super::topics::TopicEntryValue;
use super::{tail, Inner, Topic};
use crate::store::StoreError;
use crate::sync::write;

/// Where a topic's tail would start.
#[derive(Debug, Clone, Copy)]
pub(super) struct Position {
    /// The oldest offset stored.
    pub start_offset: u64,
    /// One past the newest: the tail starts there.
    pub committed_end: u64,
}

impl Position {
    /// A topic created just now: its tail starts at its first message.
    pub const NEW: Position = Position {
        start_offset: 0,
        committed_end: 0,
    };
}

/// The wait before watching again after the watch failed.
const RETRY_DELAY: Duration = Duration::from_millis(500);

/// Loads every topic of the bucket, each tailed from its end; returns the
/// revision to watch from.
pub(super) async fn load(inner: &Arc<Inner>) -> Result<u64, StoreError> {
    let unavailable =
        |e: &dyn std::fmt::Display| StoreError::Unavailable(format!("topics bucket: {e}"));
    let status = inner
        .nats
        .retrying(|| inner.bucket.status())
        .await
        .map_err(|e| unavailable(&e))?;
    let last_revision = status.info.state.last_sequence;
    let mut keys = inner
        .nats
        .retrying(|| inner.bucket.keys())
        .await
        .map_err(|e| unavailable(&e))?;
    let mut names = Vec::new();
    while let Some(key) = keys.next().await {
        names.push(key.map_err(|e| unavailable(&e))?);
    }
    for key in names {
        let Some(entry) = inner
            .nats
            .retrying(|| inner.bucket.entry(&key))
            .await
            .map_err(|e| unavailable(&e))?
        else {
            continue;
        };
        if entry.operation != kv::Operation::Put {
            continue;
        }
        let Some(value) = decode(&entry) else {
            continue;
        };
        let position = match inner.nats.jetstream.get_stream(&key).await {
            Ok(mut stream) => match stream.info().await {
                Ok(info) => Position {
                    start_offset: info.state.first_sequence.saturating_sub(1),
                    committed_end: info.state.last_sequence,
                },
                Err(e) => return Err(unavailable(&e)),
            },
            Err(e) => {
                tracing::warn!(topic = %value.name, stream = %key, error = %e, "the topic's stream is missing; it is followed from its start once it exists");
                Position::NEW
            }
        };
        apply_put(inner, &key, entry.revision, value, position);
    }
    Ok(last_revision + 1)
}

/// Applies the bucket's changes from revision `from` until the store stops.
pub(super) async fn follow(inner: Arc<Inner>, mut from: u64) {
    loop {
        match inner.bucket.watch_all_from_revision(from).await {
            Ok(mut changes) => loop {
                let change = tokio::select! {
                    () = inner.stop.cancelled() => return,
                    change = changes.next() => change,
                };
                match change {
                    Some(Ok(entry)) => {
                        from = entry.revision + 1;
                        apply(&inner, entry);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "the topics bucket's watch failed; watching again");
                        break;
                    }
                    None => break,
                }
            },
            Err(e) => tracing::warn!(error = %e, "cannot watch the topics bucket; trying again"),
        }
        tokio::select! {
            () = inner.stop.cancelled() => return,
            () = tokio::time::sleep(RETRY_DELAY) => {}
        }
    }
}

/// Reads one topic's entry now (another node created it a moment ago).
pub(super) async fn catch_up(inner: &Arc<Inner>, stream: &str) -> Result<(), StoreError> {
    let entry = inner
        .nats
        .retrying(|| inner.bucket.entry(stream))
        .await
        .map_err(|e| StoreError::Unavailable(format!("topics bucket: {e}")))?;
    if let Some(entry) = entry {
        apply(inner, entry);
    }
    Ok(())
}

fn apply(inner: &Arc<Inner>, entry: kv::Entry) {
    match entry.operation {
        kv::Operation::Put => {
            if let Some(value) = decode(&entry) {
                apply_put(inner, &entry.key, entry.revision, value, Position::NEW);
            }
        }
        kv::Operation::Delete | kv::Operation::Purge => {
            apply_delete(inner, &entry.key, entry.revision);
        }
    }
}

fn decode(entry: &kv::Entry) -> Option<TopicEntryValue> {
    match serde_json::from_slice(&entry.value) {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::warn!(key = %entry.key, error = %e, "a topics bucket entry sluice cannot read; ignored");
            None
        }
    }
}

/// A topic's entry put at `revision`: the topic is known from now on and
/// followed from `position`.
pub(super) fn apply_put(
    inner: &Arc<Inner>,
    stream: &str,
    revision: u64,
    value: TopicEntryValue,
    position: Position,
) -> Option<Arc<Topic>> {
    let change = write(&inner.topics).put(
        stream,
        value,
        revision,
        position.committed_end,
        position.start_offset,
    );
    let created = match &change {
        super::Change::Created { topic, replaced } => {
            if let Some(old) = replaced {
                let _ = inner.events.send(crate::store::TopicEvent::Deleted {
                    name: old.name.clone(),
                    incarnation: old.incarnation,
                });
            }
            // Followed once a feed wants it (a subscription's catch-up, or
            // a feed whose pattern it matches).
            if inner.registry.wants(&topic.name) {
                tail::start(inner, topic, None);
            }
            Some(topic.clone())
        }
        _ => None,
    };
    if let Some(event) = change.event() {
        let _ = inner.events.send(event);
    }
    created
}

/// A topic's entry deleted at `revision`.
pub(super) fn apply_delete(inner: &Arc<Inner>, stream: &str, revision: u64) {
    let change = write(&inner.topics).delete(stream, revision);
    if let Some(event) = change.event() {
        let _ = inner.events.send(event);
    }
}
