//! [`Load`]: the steady work of a fault scenario, each client on a
//! connection of its own, recording every operation in the run's
//! [`Recorder`]:
//!
//! - a publisher: one message every [`PUBLISH_EVERY`], at most
//!   [`IN_FLIGHT`] unanswered, each with an id (`p-<n>`) and one of
//!   [`KEYS`] keys; on node-0 first;
//! - a subscriber replaying the topic from its start, on node-1 first, so
//!   it receives across nodes;
//! - two group members, one on each node first. They ack what they get,
//!   but nack the first delivery of every 50th message (a redelivery) and
//!   reject every 100th (a dead letter), so that both paths run during the
//!   faults too.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use sluice_client::{
    Client, ClientError, ConsumeOptions, Consumer, Delivered, Delivery, ErrorCode, Message,
    StartPosition, Stored, Subscription,
};
use sluice_tests::history::{PublishOutcome, Recorder, Seen, SettleAnswer, Verdict};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::cluster::FaultCluster;
use super::{GROUP, TOPIC};

/// How often the publisher sends (about 100 messages a second: modest,
/// on a 2-core machine that runs five servers too).
const PUBLISH_EVERY: Duration = Duration::from_millis(10);
/// Publishes unanswered at once.
const IN_FLIGHT: usize = 16;
/// Keys the messages spread over.
const KEYS: u64 = 8;
/// How long the publisher waits for the answers still out once it stops;
/// what is unanswered then is unknown.
const ANSWER_LIMIT: Duration = Duration::from_secs(30);
/// How long a member waits for its settlements still out once it stops.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// The group's ack wait: short, so that a delivery lost with a node comes
/// back soon.
const ACK_WAIT: Duration = Duration::from_secs(2);
/// The delay before a nacked message comes again.
const BACKOFF: Duration = Duration::from_millis(200);
/// Deliveries of a message before it is dead-lettered.
const MAX_DELIVER: u32 = 5;
/// Deliveries a member holds at once.
const MEMBER_IN_FLIGHT: u32 = 16;

/// The name of the subscription in reports.
const SUBSCRIPTION: &str = "replay";

/// The running clients.
pub struct Load {
    recorder: Arc<Recorder>,
    subscription: usize,
    stop_publishing: CancellationToken,
    publisher: Option<JoinHandle<()>>,
    stop_reading: CancellationToken,
    readers: Vec<JoinHandle<()>>,
}

/// The number in a message id `p-<n>`.
fn number(id: Option<&str>) -> Option<u64> {
    id?.strip_prefix("p-")?.parse().ok()
}

/// How a member settles a delivery: see the module's doc.
fn verdict(delivery: &Delivered) -> Verdict {
    match number(delivery.id.as_deref()) {
        Some(n) if n % 100 == 42 => Verdict::Reject,
        Some(n) if n % 50 == 7 && delivery.attempt == 1 => Verdict::Nack,
        _ => Verdict::Ack,
    }
}

fn seen(message: &Delivered) -> Seen {
    Seen {
        offset: message.offset,
        id: message.id.clone(),
        key: (message.key.as_deref()).map(|k| String::from_utf8_lossy(k).into_owned()),
    }
}

fn outcome(result: Result<Stored, ClientError>) -> PublishOutcome {
    match result {
        Ok(stored) => PublishOutcome::Acked {
            offset: stored.offset,
            duplicate: stored.duplicate,
        },
        Err(e) => PublishOutcome::Failed(e.to_string()),
    }
}

/// A settlement's answer: refused by the broker as stale (the delivery
/// had moved on), or in doubt: no answer, or a failure that may come after
/// JetStream applied it. `DeliveryLost` is in doubt too, although its code
/// says stale: the client gives it to a settlement written before the
/// connection was lost as well, and the node may have applied that one.
fn answer(result: &Result<(), ClientError>) -> SettleAnswer {
    match result {
        Ok(()) => SettleAnswer::Confirmed,
        Err(ClientError::DeliveryLost { .. }) => SettleAnswer::InDoubt,
        Err(e) if e.code() == Some(ErrorCode::StaleSettle) => SettleAnswer::Refused,
        Err(_) => SettleAnswer::InDoubt,
    }
}

impl Load {
    /// Creates the topic, then starts the subscriber, the members and the
    /// publisher, in that order.
    pub async fn start(cluster: &FaultCluster, recorder: Arc<Recorder>) -> anyhow::Result<Load> {
        let admin = cluster.client(0, "faults-setup").await?;
        admin.create_topic(TOPIC, None, None).await?;
        admin.close().await;
        let stop_reading = CancellationToken::new();
        let mut readers = Vec::new();

        let subscriber = cluster.client(1, "faults-subscriber").await?;
        let subscription = recorder.subscribed(SUBSCRIPTION, Some(0));
        let sub = subscriber.subscribe(TOPIC, StartPosition::Earliest).await?;
        readers.push(tokio::spawn(read(
            sub,
            recorder.clone(),
            subscription,
            stop_reading.clone(),
        )));
        for member in 0..2 {
            let client = cluster
                .client(member, &format!("faults-member-{member}"))
                .await?;
            let options = ConsumeOptions::default()
                .start(StartPosition::Earliest)
                .ack_wait(ACK_WAIT)
                .backoff([BACKOFF])
                .max_deliver(MAX_DELIVER)
                .max_in_flight(MEMBER_IN_FLIGHT);
            let consumer = client.consume(TOPIC, GROUP, options).await?;
            readers.push(tokio::spawn(work(
                member,
                consumer,
                recorder.clone(),
                stop_reading.clone(),
            )));
        }

        let publisher = cluster.client(0, "faults-publisher").await?;
        let stop_publishing = CancellationToken::new();
        let publisher = tokio::spawn(publish(
            publisher,
            recorder.clone(),
            stop_publishing.clone(),
        ));
        Ok(Load {
            recorder,
            subscription,
            stop_publishing,
            publisher: Some(publisher),
            stop_reading,
            readers,
        })
    }

    /// Stops publishing and waits for the answers still out (bounded: what
    /// is unanswered then stays unknown).
    pub async fn stop_publishing(&mut self) {
        self.stop_publishing.cancel();
        if let Some(task) = self.publisher.take() {
            let _ = task.await;
        }
    }

    /// The offset after the last one the subscription received.
    pub fn subscription_at(&self) -> u64 {
        self.recorder.received_up_to(self.subscription)
    }

    /// Stops the subscriber and the members.
    pub async fn stop(mut self) {
        self.stop_publishing().await;
        self.stop_reading.cancel();
        for task in self.readers.drain(..) {
            let _ = task.await;
        }
    }
}

/// The publisher: see the module's doc. Ends when `stop` is cancelled and
/// the answers still out came, or [`ANSWER_LIMIT`] passed.
async fn publish(client: Client, recorder: Arc<Recorder>, stop: CancellationToken) {
    let mut pending = FuturesUnordered::new();
    let mut tick = tokio::time::interval(PUBLISH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = 0u64;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick(), if pending.len() < IN_FLIGHT => {
                let (id, key) = (format!("p-{next}"), format!("k{}", next % KEYS));
                let message = Message::new(TOPIC, format!("message {next} of key {key}"))
                    .id(id.clone())
                    .key(key.clone());
                let index = recorder.invoked(&id, Some(&key));
                let client = client.clone();
                pending.push(async move { (index, client.publish_message(message).await) });
                next += 1;
            }
            Some((index, result)) = pending.next(), if !pending.is_empty() => {
                recorder.answered(index, outcome(result));
            }
        }
    }
    let deadline = tokio::time::Instant::now() + ANSWER_LIMIT;
    while let Ok(Some((index, result))) = tokio::time::timeout_at(deadline, pending.next()).await {
        recorder.answered(index, outcome(result));
    }
}

/// The subscriber: records what it hands out until `stop`, or until it
/// fails (recorded too).
async fn read(
    mut sub: Subscription,
    recorder: Arc<Recorder>,
    index: usize,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            next = sub.recv() => match next {
                Some(Ok(message)) => recorder.received(index, seen(&message)),
                Some(Err(e)) => return recorder.subscription_ended(index, e.to_string()),
                None => return recorder.subscription_ended(index, "the subscription ended".into()),
            },
        }
    }
}

/// Settles `delivery` by `verdict` and records the answer.
async fn settle(member: usize, delivery: Delivery, verdict: Verdict, recorder: Arc<Recorder>) {
    let result = match verdict {
        Verdict::Ack => delivery.ack().await,
        Verdict::Nack => delivery.nack(None).await,
        Verdict::Reject => delivery.reject("poison, on purpose").await,
    };
    let message = (delivery.offset, delivery.attempt);
    recorder.settled(member, message, verdict, answer(&result));
}

/// A group member: records each delivery, settles it (settlements run
/// side by side, as a real worker's would) until `stop`, or until its
/// consumer fails (recorded too).
async fn work(
    member: usize,
    mut consumer: Consumer,
    recorder: Arc<Recorder>,
    stop: CancellationToken,
) {
    let mut settling = FuturesUnordered::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            Some(()) = settling.next(), if !settling.is_empty() => {}
            next = consumer.recv() => match next {
                Some(Ok(delivery)) => {
                    let id = delivery.id.as_deref();
                    recorder.delivered(member, delivery.offset, delivery.attempt, id);
                    let verdict = verdict(&delivery);
                    settling.push(settle(member, delivery, verdict, recorder.clone()));
                }
                Some(Err(e)) => {
                    recorder.member_ended(member, e.to_string());
                    break;
                }
                None => {
                    recorder.member_ended(member, "the consumer ended".into());
                    break;
                }
            },
        }
    }
    let _ = tokio::time::timeout(SETTLE_LIMIT, async {
        while settling.next().await.is_some() {}
    })
    .await;
}
