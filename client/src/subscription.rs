//! [`Subscription`]: the deliveries of one subscription as a `Stream`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use sluice_proto::{Delivered, RequestBody};
use tokio::sync::mpsc;

use crate::connection::{Connection, SubscriptionEvent};
use crate::error::ClientError;

/// A live or replaying subscription. Yields messages in offset order per
/// topic. Dropping it ends the subscription on the broker.
pub struct Subscription {
    id: u64,
    pattern: String,
    events: mpsc::Receiver<SubscriptionEvent>,
    buffered: VecDeque<Delivered>,
    dropped: u64,
    ended: bool,
    connection: Arc<Connection>,
}

impl Subscription {
    /// Registers a subscription on `connection` for the broker's delivery
    /// stream; the caller then asks the broker for it. Dropping the result
    /// unregisters it, so a refused request leaves nothing behind.
    pub(crate) fn register(connection: Arc<Connection>, pattern: String) -> Self {
        let (id, events) = connection.register_subscription();
        Subscription {
            id,
            pattern,
            events,
            buffered: VecDeque::new(),
            dropped: 0,
            ended: false,
            connection,
        }
    }

    /// The id of this subscription on its connection.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The pattern subscribed to.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// How many messages a live subscription has missed so far because it
    /// fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The next message; `None` when the subscription ended.
    pub async fn recv(&mut self) -> Option<Result<Delivered, ClientError>> {
        std::future::poll_fn(|cx| self.poll_delivery(cx)).await
    }

    fn poll_delivery(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Delivered, ClientError>>> {
        loop {
            if let Some(message) = self.buffered.pop_front() {
                return Poll::Ready(Some(Ok(message)));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            match self.events.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(SubscriptionEvent::Messages { messages, dropped })) => {
                    self.dropped += dropped;
                    self.buffered.extend(messages);
                }
                Poll::Ready(Some(SubscriptionEvent::End(None))) | Poll::Ready(None) => {
                    self.ended = true;
                }
                Poll::Ready(Some(SubscriptionEvent::End(Some(error)))) => {
                    self.ended = true;
                    return Poll::Ready(Some(Err(ClientError::Server(error))));
                }
                Poll::Ready(Some(SubscriptionEvent::Failed(reason))) => {
                    self.ended = true;
                    return Poll::Ready(Some(Err(ClientError::Protocol(reason))));
                }
            }
        }
    }
}

impl Stream for Subscription {
    type Item = Result<Delivered, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_delivery(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let registered = self.connection.unregister_subscription(self.id);
        if registered && !self.ended {
            self.connection.request_detached(RequestBody::Unsubscribe {
                subscription: self.id,
            });
        }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("pattern", &self.pattern)
            .field("dropped", &self.dropped)
            .finish()
    }
}
