//! The load of one broker life: publishers that pipeline batches of
//! messages with ids to the test topics, and consumer-group members that
//! ack (and now and then nack) what they get, all recording into the
//! shared [`History`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use sluice_client::{Client, ClientError, ConsumeOptions, Delivery, StartPosition};
use sluice_tests::history::{
    publish_until_failure, Attempt, GroupLedger, Ledger, Outgoing, PublishEnd, SettleAnswer,
    SettleKind,
};
use tokio_util::sync::CancellationToken;

/// The topics the publishers write, and the group reads.
pub const TOPICS: [&str; 2] = ["crash.a", "crash.b"];
/// The group's pattern: both topics.
pub const PATTERN: &str = "crash.*";
/// The consumer group.
pub const GROUP: &str = "crash-group";

/// Publish requests each publisher keeps in flight.
const PUBLISH_IN_FLIGHT: usize = 4;
/// Most messages in one publish batch (each batch mixes the topics).
const MAX_BATCH: usize = 16;
/// Longest random padding after a payload's id: sizes vary, so records
/// straddle the index's 4 KiB steps and segment ends differently.
const MAX_PADDING: usize = 120;
/// Deliveries each member holds unsettled at most.
const MEMBER_IN_FLIGHT: u32 = 64;
/// Long enough that a member never loses a delivery to its ack wait while
/// the broker runs: redeliveries then come from kills and nacks.
const ACK_WAIT: Duration = Duration::from_secs(10);
/// Short, so a nacked message comes back within the round.
const NACK_BACKOFF: Duration = Duration::from_millis(50);
/// High enough that no message is dead-lettered by kills and nacks: every
/// message stays the group's to ack.
const MAX_DELIVER: u32 = 10_000;
/// The share of settles (in percent) that wait a little first, so that
/// some deliveries are held unsettled when the kill comes.
const SLOW_SETTLE_PERCENT: u8 = 20;
/// The longest such wait.
const SLOW_SETTLE_MAX: Duration = Duration::from_millis(20);

/// What the clients saw, shared by every task of the test.
#[derive(Debug, Default)]
pub struct History {
    /// Publishes: sent and acked.
    pub publishes: Mutex<Ledger>,
    /// The group's deliveries and settles.
    pub group: Mutex<GroupLedger>,
    /// Batches never acked, to send again (same ids) in the next life.
    pub retries: Mutex<VecDeque<Vec<Outgoing>>>,
}

/// Locks a history mutex; a panic elsewhere already failed the test.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs publisher `index` of life `life` until its publishes fail (the
/// broker is killed): first the batches left unacked by earlier lives,
/// then new ones. Every message gets an id unique in the test, and a
/// payload that starts with it.
pub async fn publisher(
    client: Client,
    life: u32,
    index: usize,
    mut rng: fastrand::Rng,
    history: Arc<History>,
) -> PublishEnd {
    let mut next = 0u64;
    let sending = history.clone();
    publish_until_failure(
        client,
        PUBLISH_IN_FLIGHT,
        move || {
            if let Some(batch) = lock(&sending.retries).pop_front() {
                return batch;
            }
            let mut ledger = lock(&sending.publishes);
            (0..rng.usize(1..=MAX_BATCH))
                .map(|_| {
                    let topic = TOPICS[rng.usize(..TOPICS.len())];
                    let id = format!("l{life}-p{index}-{next}");
                    next += 1;
                    let padding_len = rng.usize(..=MAX_PADDING);
                    let padding: String = std::iter::repeat_with(|| rng.alphanumeric())
                        .take(padding_len)
                        .collect();
                    let payload = Bytes::from(format!("{id}|{padding}"));
                    ledger.sent(topic, &payload);
                    Outgoing {
                        topic: topic.to_owned(),
                        id: Some(id),
                        payload,
                    }
                })
                .collect()
        },
        move |batch, stored| {
            let mut ledger = lock(&history.publishes);
            for (message, at) in batch.iter().zip(stored) {
                ledger.acked(&message.topic, at.offset, &message.payload);
            }
        },
    )
    .await
}

/// How a member's life ended.
#[derive(Debug, Default)]
pub struct MemberEnd {
    /// Deliveries received and not settled (no settle sent).
    pub held: usize,
    /// Settles sent that the broker never answered.
    pub unanswered: usize,
    /// Settles the broker refused (a stale one, say).
    pub refused: usize,
    /// Why the membership ended, when not by `stop`.
    pub error: Option<String>,
}

/// A settle as it ended: which delivery, how, and the broker's answer
/// (`None`: never sent, the connection was gone first).
type Settled = (Delivery, SettleKind, Option<SettleAnswer>);

/// Settles `delivery` after `delay` (if any), unless the connection is
/// closed by then.
async fn settle(
    connection: quinn::Connection,
    delivery: Delivery,
    kind: SettleKind,
    delay: Option<Duration>,
) -> Settled {
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    if connection.close_reason().is_some() {
        return (delivery, kind, None);
    }
    let result = match kind {
        SettleKind::Ack => delivery.ack().await,
        SettleKind::Nack => delivery.nack(None).await,
    };
    let answer = match result {
        Ok(()) => SettleAnswer::Confirmed,
        Err(ClientError::Server(_)) => SettleAnswer::Refused,
        Err(_) => SettleAnswer::InDoubt,
    };
    (delivery, kind, Some(answer))
}

/// The group's options: see the constants.
fn consume_options() -> ConsumeOptions {
    ConsumeOptions::default()
        .start(StartPosition::Earliest)
        .ack_wait(ACK_WAIT)
        .backoff([NACK_BACKOFF])
        .max_deliver(MAX_DELIVER)
        .max_in_flight(MEMBER_IN_FLIGHT)
}

/// Runs one group member of life `life` until the broker ends the
/// membership (killed) or `stop` (then it waits for the answers to the
/// settles it sent). Nacks `nack_percent` of its deliveries.
pub async fn member(
    client: Client,
    life: u32,
    mut rng: fastrand::Rng,
    nack_percent: u8,
    history: Arc<History>,
    stop: CancellationToken,
) -> anyhow::Result<MemberEnd> {
    let mut consumer = client.consume(PATTERN, GROUP, consume_options()).await?;
    let connection = client.connection().clone();
    let mut settling = FuturesUnordered::new();
    let mut end = MemberEnd::default();
    let record = |end: &mut MemberEnd, (delivery, kind, answer): Settled| {
        let Some(answer) = answer else {
            end.held += 1;
            return;
        };
        match answer {
            SettleAnswer::InDoubt => end.unanswered += 1,
            SettleAnswer::Refused => end.refused += 1,
            SettleAnswer::Confirmed => {}
        }
        let attempt = Attempt {
            life,
            attempt: delivery.attempt,
        };
        lock(&history.group).settled(&delivery.topic, delivery.offset, attempt, kind, answer);
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            next = consumer.recv() => match next {
                Some(Ok(delivery)) => {
                    let attempt = Attempt { life, attempt: delivery.attempt };
                    lock(&history.group).delivered(&delivery.message, attempt);
                    let kind = if rng.u8(..100) < nack_percent {
                        SettleKind::Nack
                    } else {
                        SettleKind::Ack
                    };
                    let delay = (rng.u8(..100) < SLOW_SETTLE_PERCENT)
                        .then(|| SLOW_SETTLE_MAX.mul_f64(rng.f64()));
                    settling.push(settle(connection.clone(), delivery, kind, delay));
                }
                Some(Err(e)) => {
                    end.error = Some(e.to_string());
                    break;
                }
                None => {
                    end.error = Some("the broker ended the membership".into());
                    break;
                }
            },
            Some(settled) = settling.next(), if !settling.is_empty() => record(&mut end, settled),
        }
    }
    // Each settle still out ends with its answer, or with the connection.
    while let Some(settled) = settling.next().await {
        record(&mut end, settled);
    }
    Ok(end)
}
