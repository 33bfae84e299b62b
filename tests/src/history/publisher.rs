//! [`publish_until_failure`]: a producer for crash tests, pipelining
//! batches until the broker goes away, reporting each ack as it comes and
//! giving back what was never acked.

use anyhow::Context;
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use sluice_client::{Client, Message, MessageOutcome};

/// One message to publish: its topic, its id (for de-duplication of a
/// retry) and its bytes, unique in a test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The topic.
    pub topic: String,
    /// The message id, if it has one.
    pub id: Option<String>,
    /// The payload.
    pub payload: Bytes,
}

impl Outgoing {
    fn message(&self) -> Message {
        let message = Message::new(self.topic.clone(), self.payload.clone());
        match &self.id {
            Some(id) => message.id(id.clone()),
            None => message,
        }
    }
}

/// Where an acked message was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckedAt {
    /// The offset in the message's topic.
    pub offset: u64,
    /// True when the broker found an earlier copy by the message id.
    pub duplicate: bool,
}

/// How [`publish_until_failure`] ended.
#[derive(Debug)]
pub struct PublishEnd {
    /// Why it stopped: the first failed publish (or an ack it could not
    /// read).
    pub error: anyhow::Error,
    /// Batches sent and never acked: each may or may not be stored.
    pub unacked: Vec<Vec<Outgoing>>,
    /// Batches acked.
    pub acked_batches: u64,
}

/// Publishes the batches `next_batch` makes, `in_flight` requests at a
/// time, until one fails (the broker was killed, the connection closed).
/// Hands every acked batch to `on_acked` with where each message was
/// stored. Once a publish failed it sends no more, waits for the ones
/// still out (each ends with its ack or its error) and returns.
///
/// Nothing here waits without end: every request ends when the
/// connection does, so the caller bounds this by closing the connection.
pub async fn publish_until_failure(
    client: Client,
    in_flight: usize,
    mut next_batch: impl FnMut() -> Vec<Outgoing>,
    mut on_acked: impl FnMut(&[Outgoing], &[AckedAt]),
) -> PublishEnd {
    let mut pending = FuturesUnordered::new();
    let mut error = None;
    let mut unacked = Vec::new();
    let mut acked_batches = 0;
    loop {
        while error.is_none() && pending.len() < in_flight.max(1) {
            pending.push(publish(client.clone(), next_batch()));
        }
        let Some((batch, result)) = pending.next().await else {
            break;
        };
        match result {
            Ok(stored) => {
                acked_batches += 1;
                on_acked(&batch, &stored);
            }
            Err(e) => {
                error.get_or_insert(e);
                unacked.push(batch);
            }
        }
    }
    PublishEnd {
        error: error.unwrap_or_else(|| anyhow::anyhow!("the publisher stopped")),
        unacked,
        acked_batches,
    }
}

/// Publishes one batch; the offsets where its messages were stored, or why
/// not. Gives the batch back either way.
async fn publish(
    client: Client,
    batch: Vec<Outgoing>,
) -> (Vec<Outgoing>, anyhow::Result<Vec<AckedAt>>) {
    let messages = batch.iter().map(Outgoing::message).collect();
    let result = client
            .publish_batch(messages)
            .await
            .context("publish failed")
            .and_then(|ack| {
                batch
                    .iter()
                    .zip(ack.outcomes)
                    .map(|(sent, outcome)| match outcome {
                        MessageOutcome::Stored(at) if at.len() == 1 && at[0].topic == sent.topic => {
                            Ok(AckedAt {
                                offset: at[0].offset,
                                duplicate: at[0].duplicate,
                            })
                        }
                        other => anyhow::bail!(
                            "the broker acked a message to {} with {other:?}, not one place in its topic",
                            sent.topic
                        ),
                    })
                    .collect()
            });
    (batch, result)
}
