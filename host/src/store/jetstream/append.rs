//! Appending to a topic's stream: every record published in order on the
//! node's one connection, then every PubAck awaited.
//!
//! A failed record fails its append: it is not published again here. A
//! leader election, or the node's server going away, fails publishes for a
//! few seconds, and publishing the rest of a batch again would store it
//! after appends made later, which succeeded meanwhile: the order of a
//! topic's acknowledged records would break. The client decides: it sends
//! the batch again with the same ids (de-duplicated), after the appends it
//! made before it, or gives up.
//!
//! One failure is sent again: the first record a node publishes to a topic
//! it just learnt of can find no stream (JetStream's "no responders"), as
//! the stream's subject reaches that node's server a moment after the
//! stream is created. No stream stored such a record, so sending it again
//! stores it once; it is awaited before the rest go out, so they follow it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use bytes::Bytes;
use futures_util::future::FutureExt;

use super::envelope;
use super::topics::Topic;
use crate::nats::Nats;
use crate::store::api::{AppendTicket, Appended};
use crate::store::{NewRecord, StoreError};

/// One record as it goes out.
struct Outgoing {
    payload: Bytes,
    /// Its `Nats-Msg-Id`, when the topic de-duplicates.
    id: Option<String>,
}

/// Publishes `records` to `topic` in order; the ticket resolves with one
/// outcome per record once JetStream acknowledged them all.
pub(super) async fn append(
    nats: &Nats,
    topic: &Topic,
    records: &[NewRecord],
) -> Result<AppendTicket, StoreError> {
    let timestamp_ms = crate::store::now_ms();
    let dedup = topic.settings.dedup_window_ms > 0;
    let outgoing: Vec<Outgoing> = records
        .iter()
        .map(|record| Outgoing {
            payload: envelope::encode(record, timestamp_ms),
            id: record.id.clone().filter(|_| dedup),
        })
        .collect();
    let (first, rest) = match outgoing.split_first() {
        Some((record, rest)) if !topic.reachable.load(Ordering::Acquire) => {
            let ack = reach(nats, topic, record)
                .await
                .map_err(|e| failed(topic, e))?;
            (Some(ack), rest)
        }
        _ => (None, &outgoing[..]),
    };
    let mut acks = Vec::with_capacity(rest.len());
    for record in rest {
        acks.push(
            send(nats, topic, record)
                .await
                .map_err(|e| failed(topic, e))?,
        );
    }
    let name = topic.name.clone();
    Ok(async move {
        let mut outcomes = Vec::with_capacity(acks.len() + 1);
        outcomes.extend(first.map(|ack| outcome(&ack, timestamp_ms)));
        for ack in acks {
            let ack = ack.await.map_err(|e| {
                StoreError::Unavailable(format!("cannot append to topic {name:?}: {e}"))
            })?;
            outcomes.push(outcome(&ack, timestamp_ms));
        }
        Ok(outcomes)
    }
    .boxed())
}

/// Publishes `record` and awaits its ack, sending it again while no stream
/// answers, for up to three request timeouts: the first publish to `topic`
/// through this node.
async fn reach(nats: &Nats, topic: &Topic, record: &Outgoing) -> Result<PublishAck, PublishError> {
    let deadline = tokio::time::Instant::now() + nats.request_timeout * 3;
    let mut delay = Duration::from_millis(10);
    loop {
        match send(nats, topic, record).await?.await {
            Ok(ack) => {
                topic.reachable.store(true, Ordering::Release);
                return Ok(ack);
            }
            Err(e)
                if e.kind() == PublishErrorKind::StreamNotFound
                    && tokio::time::Instant::now() + delay < deadline =>
            {
                tracing::debug!(topic = %topic.name, "no stream answered yet; publishing again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(200));
            }
            Err(e) => return Err(e),
        }
    }
}

fn failed(topic: &Topic, e: PublishError) -> StoreError {
    StoreError::Unavailable(format!("cannot append to topic {:?}: {e}", topic.name))
}

fn message(stream: &str, record: &Outgoing) -> PublishMessage {
    let message = PublishMessage::build()
        .payload(record.payload.clone())
        .expected_stream(stream);
    match &record.id {
        Some(id) => message.message_id(id.as_str()),
        None => message,
    }
}

async fn send(
    nats: &Nats,
    topic: &Topic,
    record: &Outgoing,
) -> Result<PublishAckFuture, PublishError> {
    nats.jetstream
        .send_publish(topic.subject.clone(), message(&topic.stream, record))
        .await
}

fn outcome(ack: &PublishAck, timestamp_ms: i64) -> Appended {
    let offset = ack.sequence.saturating_sub(1);
    if ack.duplicate {
        Appended::Duplicate { offset }
    } else {
        Appended::Stored {
            offset,
            timestamp_ms,
        }
    }
}
