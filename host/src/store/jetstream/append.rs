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

use async_nats::jetstream::context::{PublishAckFuture, PublishError};
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
    let mut acks = Vec::with_capacity(outgoing.len());
    for record in &outgoing {
        acks.push(
            send(nats, topic, record)
                .await
                .map_err(|e| failed(topic, e))?,
        );
    }
    let name = topic.name.clone();
    Ok(async move {
        let mut outcomes = Vec::with_capacity(acks.len());
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
