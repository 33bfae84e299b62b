//! [`Consumer`]: membership of a consumer group, as a `Stream` of
//! [`Delivery`]s to settle.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::Stream;
use sluice_proto::{
    Delivered, DeliveryPlugin, ErrorCode, GroupOptions, RequestBody, ResponseBody, Settle,
    SettleAction, SettleBatch, SettleItem, StartPosition,
};
use tokio::sync::{mpsc, oneshot};

use crate::connection::Connection;
use crate::error::ClientError;
use crate::subscription::Subscription;

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
#[derive(Debug)]
pub struct Consumer {
    stream: Subscription,
    group: Arc<str>,
    settler: Settler,
}

impl Consumer {
    pub(crate) fn new(stream: Subscription, group: Arc<str>, connection: Arc<Connection>) -> Self {
        Consumer {
            settler: Settler::spawn(connection, group.clone(), stream.id()),
            stream,
            group,
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
        Pin::new(&mut this.stream).poll_next(cx).map(|item| {
            item.map(|result| {
                result.map(|message| Delivery {
                    message,
                    settler: this.settler.clone(),
                })
            })
        })
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
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message (`attempt` says which delivery this is).
    pub message: Delivered,
    settler: Settler,
}

impl std::ops::Deref for Delivery {
    type Target = Delivered;
    fn deref(&self) -> &Delivered {
        &self.message
    }
}

impl Delivery {
    async fn settle(&self, action: SettleAction) -> Result<(), ClientError> {
        self.settler
            .settle(SettleItem {
                topic: self.message.topic.clone(),
                offset: self.message.offset,
                action,
                // Group deliveries count from 1; 0 would be a bug's.
                attempt: (self.message.attempt > 0).then_some(self.message.attempt),
            })
            .await
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

/// Settlements of one consumer waiting to be sent, with their callers.
type Waiting = (SettleItem, oneshot::Sender<Result<(), ClientError>>);

/// Most settlements in one request.
const MAX_SETTLE_BATCH: usize = 512;
/// Settle requests of one consumer in flight at once.
const MAX_SETTLE_REQUESTS: usize = 8;

/// Coalesces a consumer's settlements: what callers settle while earlier
/// requests are on the wire goes out together in one `SettleBatch`
/// request (a caller that awaits each ack sends one `Settle` at a time,
/// as before). Against a broker that predates batches it settles one at a
/// time.
#[derive(Debug, Clone)]
struct Settler {
    tx: mpsc::UnboundedSender<Waiting>,
}

/// Where a consumer's settlements go: its connection, group and consumer id.
struct SettleTarget {
    connection: Arc<Connection>,
    group: Arc<str>,
    consumer: u64,
}

impl Settler {
    fn spawn(connection: Arc<Connection>, group: Arc<str>, consumer: u64) -> Settler {
        let (tx, rx) = mpsc::unbounded_channel();
        let target = Arc::new(SettleTarget {
            connection,
            group,
            consumer,
        });
        tokio::spawn(settle_loop(target, rx));
        Settler { tx }
    }

    async fn settle(&self, item: SettleItem) -> Result<(), ClientError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((item, reply))
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
                let mut batch = vec![first];
                while batch.len() < MAX_SETTLE_BATCH {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
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

/// An error for each caller of a request that failed as a whole.
fn copy_error(e: &ClientError) -> ClientError {
    match e {
        ClientError::Server(body) => ClientError::Server(body.clone()),
        ClientError::Connection(c) => ClientError::Connection(c.clone()),
        ClientError::Closed => ClientError::Closed,
        other => ClientError::Protocol(other.to_string()),
    }
}

async fn send_one(target: &SettleTarget, item: SettleItem) -> Result<(), ClientError> {
    let settle = Settle {
        group: target.group.to_string(),
        topic: item.topic,
        offset: item.offset,
        action: item.action,
        consumer: Some(target.consumer),
        attempt: item.attempt,
    };
    match target
        .connection
        .request(RequestBody::Settle(settle))
        .await?
    {
        ResponseBody::Settled => Ok(()),
        other => Err(ClientError::unexpected_response(other)),
    }
}

async fn send_settles(target: Arc<SettleTarget>, batch: Vec<Waiting>, batches: Arc<AtomicBool>) {
    if batch.len() > 1 && batches.load(Ordering::Relaxed) {
        let items = batch.iter().map(|(item, _)| item.clone()).collect();
        let request = RequestBody::SettleBatch(SettleBatch {
            group: target.group.to_string(),
            items,
            consumer: Some(target.consumer),
        });
        match target.connection.request(request).await {
            Ok(ResponseBody::SettledBatch { errors }) if errors.len() == batch.len() => {
                for ((_, reply), error) in batch.into_iter().zip(errors) {
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
                for (_, reply) in batch {
                    let _ = reply.send(Err(copy_error(&e)));
                }
                return;
            }
            Err(e) => {
                for (_, reply) in batch {
                    let _ = reply.send(Err(copy_error(&e)));
                }
                return;
            }
        }
    }
    let sends = batch.into_iter().map(|(item, reply)| {
        let target = &target;
        async move {
            let _ = reply.send(send_one(target, item).await);
        }
    });
    futures_util::future::join_all(sends).await;
}
