//! A topic's tail: how a node learns of messages stored through any node.
//!
//! A node follows a topic's stream, once one of its feeds wants the topic,
//! with an ordered consumer (R1, in
//! memory, no acks; the client re-creates it from the last sequence seen
//! when it misses a message or a heartbeat, so what it delivers is in order
//! with no gaps). The node turns what arrives into committed batches for
//! its feeds and moves the topic's committed end, which is what its
//! subscriptions take as "stored so far".
//!
//! A message the tail cannot decode is skipped with a warning (it was not
//! published by sluice); a gap that is not the tail's own (retention removed
//! messages first) starts a new batch, and a replaying subscription fills
//! it from the stream.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use futures_util::StreamExt;

use super::envelope;
use super::topics::Topic;
use super::Inner;
use crate::store::{Record, StoreError, StoredBatch};

/// Most messages put in one batch for the feeds.
const MAX_BATCH: usize = 1024;

/// The wait before following a stream again after an error, doubled up to
/// [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);

/// Follows `topic` from stream sequence `from` until it is deleted or the
/// store stops.
pub(super) async fn follow(inner: Arc<Inner>, topic: Arc<Topic>, mut from: u64) {
    let mut delay = FIRST_RETRY_DELAY;
    loop {
        let outcome = tokio::select! {
            () = topic.stop.cancelled() => return,
            () = inner.stop.cancelled() => return,
            outcome = follow_once(&inner, &topic, &mut from) => outcome,
        };
        match outcome {
            Ok(()) => delay = FIRST_RETRY_DELAY,
            Err(error) => {
                tracing::debug!(topic = %topic.name, stream = %topic.stream, %error, from, "following the stream again");
            }
        }
        tokio::select! {
            () = topic.stop.cancelled() => return,
            () = inner.stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(MAX_RETRY_DELAY);
    }
}

/// One ordered consumer, until it fails; `from` moves past what arrives.
async fn follow_once(inner: &Inner, topic: &Topic, from: &mut u64) -> Result<(), String> {
    let stream = inner
        .nats
        .jetstream
        .get_stream_no_info(&topic.stream)
        .await
        .map_err(|e| e.to_string())?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: topic.subject.clone(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: *from,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| e.to_string())?
        .ready_chunks(MAX_BATCH);
    while let Some(chunk) = messages.next().await {
        let mut records: Vec<Record> = Vec::with_capacity(chunk.len());
        for message in chunk {
            let message = match message {
                Ok(message) => message,
                Err(e) => {
                    publish(inner, topic, std::mem::take(&mut records));
                    return Err(e.to_string());
                }
            };
            let sequence = match message.info() {
                Ok(info) => info.stream_sequence,
                Err(e) => {
                    tracing::warn!(topic = %topic.name, error = %e, "a message without JetStream metadata; skipped");
                    continue;
                }
            };
            if sequence < *from {
                continue; // seen before the consumer was re-created
            }
            if sequence > *from && !records.is_empty() {
                // Not dense: what was gathered goes out first.
                publish(inner, topic, std::mem::take(&mut records));
            }
            *from = sequence + 1;
            match envelope::decode(&topic.stream, sequence, &message.payload) {
                Ok(record) => records.push(record),
                Err(e) => {
                    publish(inner, topic, std::mem::take(&mut records));
                    tracing::warn!(topic = %topic.name, error = %e, "skipped");
                    // Readers must not wait for it.
                    topic.committed_end.fetch_max(sequence, Ordering::AcqRel);
                }
            }
        }
        publish(inner, topic, records);
    }
    Err("the ordered consumer ended".into())
}

/// Starts `topic`'s tail unless it runs already: from `end` (the stream's
/// last sequence, which the committed end moves to) when given, else from
/// the committed end as known.
pub(super) fn start(inner: &Arc<Inner>, topic: &Arc<Topic>, end: Option<u64>) {
    if topic.tailing.swap(true, Ordering::AcqRel) {
        return;
    }
    if let Some(end) = end {
        topic.committed_end.fetch_max(end, Ordering::AcqRel);
    }
    let from = topic.committed_end.load(Ordering::Acquire) + 1;
    inner
        .tasks
        .spawn(follow(inner.clone(), topic.clone(), from));
}

/// Waits until `topic`'s tail has seen every message its stream held when
/// called (bounded by the request timeout), starting the tail if needed.
pub(super) async fn caught_up(inner: &Arc<Inner>, topic: &Arc<Topic>) -> Result<(), StoreError> {
    let unavailable = |e: &dyn std::fmt::Display| {
        StoreError::Unavailable(format!("stream {}: {e}", topic.stream))
    };
    let mut stream = inner
        .nats
        .jetstream
        .get_stream(&topic.stream)
        .await
        .map_err(|e| unavailable(&e))?;
    let state = &stream.info().await.map_err(|e| unavailable(&e))?.state;
    let end = state.last_sequence;
    // Retention moves the start; the stream knows where it is now.
    topic.start_offset.store(
        state.first_sequence.saturating_sub(1).min(end),
        Ordering::Release,
    );
    start(inner, topic, Some(end));
    let mut commits = inner.commits.subscribe();
    let deadline = tokio::time::Instant::now() + inner.nats.request_timeout;
    while topic.committed_end.load(Ordering::Acquire) < end && !topic.stop.is_cancelled() {
        match tokio::time::timeout_at(deadline, commits.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(StoreError::Closed),
            Err(_) => {
                return Err(unavailable(
                    &"this node's copy of the stream did not catch up in time",
                ))
            }
        }
    }
    Ok(())
}

/// Makes `records` (dense, ascending) visible: the committed end moves past
/// them, then the feeds that want the topic get them.
fn publish(inner: &Inner, topic: &Topic, records: Vec<Record>) {
    let Some(last) = records.last() else {
        return;
    };
    topic
        .committed_end
        .fetch_max(last.offset + 1, Ordering::AcqRel);
    let first = records[0].offset;
    if first < topic.start_offset.load(Ordering::Acquire) {
        topic.start_offset.store(first, Ordering::Release);
    }
    let batch = Arc::new(StoredBatch {
        topic: topic.name.clone(),
        incarnation: topic.incarnation,
        records,
    });
    for inbox in topic
        .fanout
        .inboxes_for(&topic.name, &inner.registry)
        .iter()
    {
        inbox.offer(&batch);
    }
    inner.commits.send_modify(|n| *n = n.wrapping_add(1));
}
