//! [`Consumer`]: membership of a consumer group, as a `Stream` of
//! [`Delivery`]s to settle, kept across the connections of its client.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::Stream;
use sluice_proto::{
    Delivered, DeliveryPlugin, ErrorCode, GroupOptions, RequestBody, ResponseBody, Settle,
    SettleAction, SettleBatch, SettleItem, StartPosition,
};
use tokio::sync::{mpsc, oneshot};

use crate::connection::Connection;
use crate::error::ClientError;
use crate::link::{Link, StreamHandle};

/// How to join a consumer group.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumeOptions {
    /// Group settings, used when this consumer creates the group.
    pub group: GroupOptions,
    /// Most unsettled deliveries this consumer holds at once.
    pub max_in_flight: u32,
    /// Deliveries this consumer takes in all (then none more); `None`: no limit.
    pub limit: Option<u64>,
    /// A plugin loaded in the broker that filters or transforms what this
    /// consumer receives; what it filters out is acked for the consumer.
    pub plugin: Option<DeliveryPlugin>,
}

impl Default for ConsumeOptions {
    fn default() -> Self {
        ConsumeOptions {
            group: GroupOptions::default(),
            max_in_flight: 64,
            limit: None,
            plugin: None,
        }
    }
}

impl ConsumeOptions {
    /// Where a new group starts.
    pub fn start(mut self, start: StartPosition) -> Self {
        self.group.start = start;
        self
    }

    /// Redeliver unacked messages after this long.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.group.ack_wait_ms = wait.as_millis() as u64;
        self
    }

    /// Delays before the 1st, 2nd, ... redelivery (the last repeats).
    pub fn backoff(mut self, delays: impl IntoIterator<Item = Duration>) -> Self {
        self.group.backoff_ms = delays.into_iter().map(|d| d.as_millis() as u64).collect();
        self
    }

    /// Deliveries before a message goes to the dead-letter topic.
    pub fn max_deliver(mut self, n: u32) -> Self {
        self.group.max_deliver = n;
        self
    }

    /// At most one message per key in flight in the group.
    pub fn key_ordered(mut self, on: bool) -> Self {
        self.group.key_ordered = on;
        self
    }

    /// Dead-letter topic (default `dlq.<topic>`).
    pub fn dead_letter_topic(mut self, topic: impl Into<String>) -> Self {
        self.group.dead_letter_topic = Some(topic.into());
        self
    }

    /// Take at most `n` deliveries in all (a worker that processes `n`
    /// messages and leaves holds nothing back).
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    /// Filter or transform deliveries with a plugin loaded in the broker
    /// (`config`: JSON for this consumer's own instance; `None` uses the
    /// plugin's configured one).
    pub fn plugin(mut self, name: impl Into<String>, config: Option<String>) -> Self {
        self.plugin = Some(DeliveryPlugin {
            name: name.into(),
            config,
        });
        self
    }

    /// Credits of this consumer.
    pub fn max_in_flight(mut self, n: u32) -> Self {
        self.max_in_flight = n;
        self
    }
}

/// A member of a consumer group. Dropping it leaves the group: its
/// unsettled messages go to the other members at once.
///
/// When the client fails over, the consumer rejoins its group with the
/// same options on the new connection. What it received over the lost
/// connection can no longer be settled ([`ClientError::DeliveryLost`]):
/// the broker released those messages when the connection went and the
/// group delivers them again.
pub struct Consumer {
    stream: StreamHandle,
    group: Arc<str>,
    settler: Settler,
    /// Deliveries received and not yet handed out, with the generation of
    /// the connection each came on.
    buffered: VecDeque<(u64, Delivered)>,
}

impl Consumer {
    pub(crate) fn new(stream: StreamHandle, group: Arc<str>) -> Self {
        Consumer {
            settler: Settler::spawn(stream.link.clone(), group.clone(), stream.id()),
            stream,
            group,
            buffered: VecDeque::new(),
        }
    }

    /// The group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The next delivery; `None` when the broker ended the membership.
    pub async fn recv(&mut self) -> Option<Result<Delivery, ClientError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for Consumer {
    type Item = Result<Delivery, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some((generation, message)) = this.buffered.pop_front() {
                if generation < this.stream.link.generation() {
                    // Released with its connection: it comes again.
                    continue;
                }
                return Poll::Ready(Some(Ok(Delivery {
                    message,
                    settler: this.settler.clone(),
                    generation,
                    link: this.stream.link.clone(),
                })));
            }
            match this.stream.poll_batch(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(batch))) => this
                    .buffered
                    .extend(batch.messages.into_iter().map(|m| (batch.generation, m))),
            }
        }
    }
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("id", &self.stream.id())
            .field("group", &self.group)
            .finish()
    }
}

/// One message delivered by a consumer group. Settle it with exactly one
/// of [`ack`](Delivery::ack), [`nack`](Delivery::nack) or
/// [`reject`](Delivery::reject); [`in_progress`](Delivery::in_progress)
/// buys time. Unsettled, it comes back after the group's ack wait.
///
/// A settlement answers this delivery only (its consumer and attempt go
/// with it): once the ack wait ran out, the consumer was dropped, or the
/// message came back as a later attempt, the broker refuses it with
/// [`ErrorCode::StaleSettle`] and leaves the message to its new holder.
/// A delivery that came on a connection the client has lost since fails
/// to settle with [`ClientError::DeliveryLost`] (whose code is
/// `StaleSettle` too): the group delivers it again.
#[derive(Clone)]
pub struct Delivery {
    /// The message (`attempt` says which delivery this is).
    pub message: Delivered,
    settler: Settler,
    /// The connection it came on.
    generation: u64,
    /// Its client's hold on the broker (which connection is current).
    link: Arc<Link>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .field("generation", &self.generation)
            .finish()
    }
}

impl std::ops::Deref for Delivery {
    type Target = Delivered;
    fn deref(&self) -> &Delivered {
        &self.message
    }
}

impl Delivery {
    async fn settle(&self, action: SettleAction) -> Result<(), ClientError> {
        let item = SettleItem {
            topic: self.message.topic.clone(),
            offset: self.message.offset,
            action,
            // Group deliveries count from 1; 0 would be a bug's.
            attempt: (self.message.attempt > 0).then_some(self.message.attempt),
        };
        self.settler.settle(item, self.generation).await
    }

    /// Whether it came on the client's current connection, so that it can
    /// still be settled. One that came on a connection lost since was
    /// released by the broker and comes again ([`ClientError::DeliveryLost`]).
    pub fn is_current(&self) -> bool {
        self.generation >= self.link.generation()
    }

    /// Done: the group never delivers it again.
    pub async fn ack(&self) -> Result<(), ClientError> {
        self.settle(SettleAction::Ack).await
    }

    /// Failed: deliver again after `delay`, or after the group's backoff.
    pub async fn nack(&self, delay: Option<Duration>) -> Result<(), ClientError> {
        self.settle(SettleAction::Nack {
            delay_ms: delay.map(|d| d.as_millis() as u64),
        })
        .await
    }

    /// Poison: move it to the dead-letter topic with this reason.
    pub async fn reject(&self, reason: impl Into<String>) -> Result<(), ClientError> {
        self.settle(SettleAction::Reject {
            reason: reason.into(),
        })
        .await
    }

    /// Still working: restart the ack-wait clock.
    pub async fn in_progress(&self) -> Result<(), ClientError> {
        self.settle(SettleAction::InProgress).await
    }
}

/// A settlement waiting to be sent: the item, the generation of the
/// connection its delivery came on, and its caller.
type Waiting = (SettleItem, u64, oneshot::Sender<Result<(), ClientError>>);

/// Most settlements in one request.
const MAX_SETTLE_BATCH: usize = 512;
/// Settle requests of one consumer in flight at once.
const MAX_SETTLE_REQUESTS: usize = 8;

/// Coalesces a consumer's settlements: what callers settle while earlier
/// requests are on the wire goes out together in one `SettleBatch`
/// request (a caller that awaits each ack sends one `Settle` at a time,
/// as before). Against a broker that predates batches it settles one at a
/// time. A settlement goes only to the connection its delivery came on.
#[derive(Debug, Clone)]
struct Settler {
    tx: mpsc::UnboundedSender<Waiting>,
}

/// Where a consumer's settlements go: its link, group and consumer id.
struct SettleTarget {
    link: Arc<Link>,
    group: Arc<str>,
    consumer: u64,
}

impl Settler {
    fn spawn(link: Arc<Link>, group: Arc<str>, consumer: u64) -> Settler {
        let (tx, rx) = mpsc::unbounded_channel();
        let target = Arc::new(SettleTarget {
            link,
            group,
            consumer,
        });
        tokio::spawn(settle_loop(target, rx));
        Settler { tx }
    }

    async fn settle(&self, item: SettleItem, generation: u64) -> Result<(), ClientError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((item, generation, reply))
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)?
    }
}

async fn settle_loop(target: Arc<SettleTarget>, mut rx: mpsc::UnboundedReceiver<Waiting>) {
    let batches = Arc::new(AtomicBool::new(true));
    let mut in_flight = FuturesUnordered::new();
    loop {
        tokio::select! {
            first = rx.recv(), if in_flight.len() < MAX_SETTLE_REQUESTS => {
                let Some(first) = first else { break };
                let generation = first.1;
                let mut batch = vec![first];
                // One connection per request: a batch stops at a delivery
                // of another connection.
                while batch.len() < MAX_SETTLE_BATCH {
                    match rx.try_recv() {
                        Ok(next) if next.1 == generation => batch.push(next),
                        Ok(next) => {
                            in_flight.push(send_settles(target.clone(), std::mem::take(&mut batch), batches.clone()));
                            batch.push(next);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                in_flight.push(send_settles(target.clone(), batch, batches.clone()));
            }
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
        }
    }
    while in_flight.next().await.is_some() {}
}

/// An error for each caller of a request that failed as a whole: a lost
/// connection means the delivery can no longer be settled.
fn copy_error(e: &ClientError, item: &SettleItem) -> ClientError {
    match e {
        e if e.is_connection_loss() => lost(item),
        ClientError::Server(body) => ClientError::Server(body.clone()),
        ClientError::Connection(c) => ClientError::Connection(c.clone()),
        ClientError::Closed => ClientError::Closed,
        other => ClientError::Protocol(other.to_string()),
    }
}

/// The settlement of `item` cannot be made: its connection is gone.
fn lost(item: &SettleItem) -> ClientError {
    ClientError::DeliveryLost {
        topic: item.topic.clone(),
        offset: item.offset,
    }
}

async fn send_one(
    target: &SettleTarget,
    conn: &Connection,
    item: SettleItem,
) -> Result<(), ClientError> {
    let settle = Settle {
        group: target.group.to_string(),
        topic: item.topic.clone(),
        offset: item.offset,
        action: item.action.clone(),
        consumer: Some(target.consumer),
        attempt: item.attempt,
    };
    match target
        .link
        .request_on(conn, RequestBody::Settle(settle))
        .await
    {
        Ok(ResponseBody::Settled) => Ok(()),
        Ok(other) => Err(ClientError::unexpected_response(other)),
        Err(e) => Err(copy_error(&e, &item)),
    }
}

/// Sends one batch of settlements of deliveries of one connection.
async fn send_settles(target: Arc<SettleTarget>, batch: Vec<Waiting>, batches: Arc<AtomicBool>) {
    let Some(generation) = batch.first().map(|w| w.1) else {
        return;
    };
    let Some(conn) = target.link.connection_of(generation) else {
        for (item, _, reply) in batch {
            let _ = reply.send(Err(lost(&item)));
        }
        return;
    };
    if batch.len() > 1 && batches.load(Ordering::Relaxed) {
        let items = batch.iter().map(|(item, _, _)| item.clone()).collect();
        let request = RequestBody::SettleBatch(SettleBatch {
            group: target.group.to_string(),
            items,
            consumer: Some(target.consumer),
        });
        match target.link.request_on(&conn, request).await {
            Ok(ResponseBody::SettledBatch { errors }) if errors.len() == batch.len() => {
                for ((_, _, reply), error) in batch.into_iter().zip(errors) {
                    let _ = reply.send(error.map_or(Ok(()), |e| Err(ClientError::Server(e))));
                }
                return;
            }
            Err(ClientError::Server(body))
                if body.error_code() == Some(ErrorCode::UnknownRequest) =>
            {
                // An older broker: settle one at a time from now on.
                batches.store(false, Ordering::Relaxed);
            }
            Ok(other) => {
                let e = ClientError::unexpected_response(other);
                for (item, _, reply) in batch {
                    let _ = reply.send(Err(copy_error(&e, &item)));
                }
                return;
            }
            Err(e) => {
                for (item, _, reply) in batch {
                    let _ = reply.send(Err(copy_error(&e, &item)));
                }
                return;
            }
        }
    }
    let sends = batch.into_iter().map(|(item, _, reply)| {
        let (target, conn) = (&target, &conn);
        async move {
            let _ = reply.send(send_one(target, conn, item).await);
        }
    });
    futures_util::future::join_all(sends).await;
}
