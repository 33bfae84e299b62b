//! [`Consumer`]: membership of a consumer group, as a `Stream` of
//! [`Delivery`]s to settle.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use sluice_proto::{
    Delivered, DeliveryPlugin, GroupOptions, RequestBody, ResponseBody, Settle, SettleAction,
    StartPosition,
};

use crate::client::Client;
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
    client: Client,
}

impl Consumer {
    pub(crate) fn new(stream: Subscription, group: Arc<str>, client: Client) -> Self {
        Consumer {
            stream,
            group,
            client,
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
                    group: this.group.clone(),
                    client: this.client.clone(),
                })
            })
        })
    }
}

/// One message delivered by a consumer group. Settle it with exactly one
/// of [`ack`](Delivery::ack), [`nack`](Delivery::nack) or
/// [`reject`](Delivery::reject); [`in_progress`](Delivery::in_progress)
/// buys time. Unsettled, it comes back after the group's ack wait.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message (`attempt` says which delivery this is).
    pub message: Delivered,
    group: Arc<str>,
    client: Client,
}

impl std::ops::Deref for Delivery {
    type Target = Delivered;
    fn deref(&self) -> &Delivered {
        &self.message
    }
}

impl Delivery {
    async fn settle(&self, action: SettleAction) -> Result<(), ClientError> {
        let settle = Settle {
            group: self.group.to_string(),
            topic: self.message.topic.clone(),
            offset: self.message.offset,
            action,
        };
        match self.client.request(RequestBody::Settle(settle)).await? {
            ResponseBody::Settled => Ok(()),
            other => Err(ClientError::Protocol(format!(
                "unexpected response {other:?}"
            ))),
        }
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
