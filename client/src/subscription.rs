//! [`Subscription`]: the deliveries of one subscription as a `Stream`,
//! across the connections of its client.
//!
//! It keeps, per topic, the offset after the last message it handed to
//! the application. When the client reconnects, the subscription goes on
//! from there over the new connection (the broker replays from those
//! offsets, for a live subscription too). What the lost connection had
//! delivered but the application had not read yet is handed out first;
//! the new connection's copies of it are skipped, and once the new
//! connection has sent anything, what is left from the old one is
//! dropped (the new one sends it again). So nothing is skipped or handed
//! out twice within a subscription, for every topic of a pattern.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use sluice_proto::Delivered;

use crate::connection::lock;
use crate::error::ClientError;
use crate::link::{Batch, Position, StreamHandle};

/// A live or replaying subscription. Yields messages in offset order per
/// topic, and goes on over a new connection when the client fails over.
/// Dropping it ends the subscription on the broker.
pub struct Subscription {
    stream: StreamHandle,
    pattern: String,
    /// Messages received and not yet handed out, with the generation of
    /// the connection each came on.
    buffered: VecDeque<(u64, Delivered)>,
    dropped: u64,
}

impl Subscription {
    /// A subscription on `pattern` over an opened stream.
    pub(crate) fn new(stream: StreamHandle, pattern: String) -> Self {
        Subscription {
            stream,
            pattern,
            buffered: VecDeque::new(),
            dropped: 0,
        }
    }

    /// The id of this subscription (the same on every connection).
    pub fn id(&self) -> u64 {
        self.stream.id()
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
            if let Some((generation, message)) = self.buffered.pop_front() {
                if self.hand_out(generation, &message) {
                    return Poll::Ready(Some(Ok(message)));
                }
                continue;
            }
            match self.stream.poll_batch(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(Batch {
                    generation,
                    messages,
                    dropped,
                }))) => {
                    self.dropped += dropped;
                    self.buffered
                        .extend(messages.into_iter().map(|m| (generation, m)));
                }
            }
        }
    }

    /// Whether `message`, from the connection of `generation`, is new to
    /// the application; if so, the application now stands after it.
    fn hand_out(&self, generation: u64, message: &Delivered) -> bool {
        let mut positions = lock(&self.stream.shared.positions);
        let Some(position) = positions.get_mut(message.topic.as_str()) else {
            positions.insert(
                message.topic.clone(),
                Position {
                    next: message.offset + 1,
                    generation,
                    resumed: None,
                },
            );
            return true;
        };
        let fresh = is_fresh(position, generation, message.offset);
        if fresh {
            position.next = message.offset + 1;
            position.generation = generation;
        }
        fresh
    }
}

/// Whether the message at `offset` of a topic where the application stands
/// at `position`, delivered by the connection of `generation`, is one it
/// has not had. One connection's stream is in offset order (or starts the
/// topic over when it was deleted and created again): all of it is new. A
/// newer connection's, resumed from an offset, repeats what the older one
/// delivered past that offset, and only that: an offset below the one it
/// resumed from is a new log's.
fn is_fresh(position: &Position, generation: u64, offset: u64) -> bool {
    generation == position.generation
        || offset >= position.next
        || matches!(position.resumed, Some((g, from)) if g == generation && offset < from)
}

impl Stream for Subscription {
    type Item = Result<Delivered, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_delivery(cx)
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id())
            .field("pattern", &self.pattern)
            .field("dropped", &self.dropped)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(next: u64, generation: u64, resumed: Option<(u64, u64)>) -> Position {
        Position {
            next,
            generation,
            resumed,
        }
    }

    #[test]
    fn one_connection_is_trusted_in_its_order() {
        let position = at(10, 1, None);
        assert!(is_fresh(&position, 1, 10));
        // A topic deleted and created again starts over on the same stream.
        assert!(is_fresh(&position, 1, 0));
    }

    #[test]
    fn a_resumed_connection_repeats_only_what_was_handed_out() {
        // Resumed on connection 2 from 7; the application read on from
        // connection 1's buffer up to 9.
        let position = at(10, 1, Some((2, 7)));
        for offset in 7..10 {
            assert!(!is_fresh(&position, 2, offset), "{offset} was handed out");
        }
        assert!(is_fresh(&position, 2, 10));
        // Below the offset it resumed from: the broker started a new log.
        assert!(is_fresh(&position, 2, 0));
    }

    #[test]
    fn a_connection_resumed_from_unknown_offsets_repeats_nothing_below_the_position() {
        // Connection 3's resume point is not known here (resumed twice).
        let position = at(10, 1, Some((2, 7)));
        assert!(!is_fresh(&position, 3, 3));
        assert!(is_fresh(&position, 3, 10));
    }
}
