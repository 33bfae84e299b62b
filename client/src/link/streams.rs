//! The link's subscriptions and consumers: what opens each on the broker,
//! so that a new connection can open it again, and the [`StreamHandle`] a
//! [`Subscription`](crate::Subscription) or [`Consumer`](crate::Consumer)
//! holds.
//!
//! A subscription resumes where its application stopped reading: it keeps,
//! per topic, the offset after the last message it handed out
//! ([`Position`]), and asks the new connection to continue from there
//! (`Subscribe::resume`). A consumer rejoins its group with the request it
//! joined with.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use sluice_proto::{Consume, Delivered, ErrorCode, RequestBody, Respond, ResponseBody, Subscribe};
use tokio::sync::mpsc;

use super::Link;
use crate::connection::{lock, Connection, EventSender, SubscriptionEvent};
use crate::error::ClientError;

/// Delivery frames buffered per subscription before the client stops
/// reading its stream (QUIC flow control then slows the broker's sender).
const SUBSCRIPTION_QUEUE_FRAMES: usize = 64;

/// The request that opens a stream on the broker.
#[derive(Debug, Clone)]
pub(crate) enum Opening {
    /// A subscription (its `resume` is filled in on each connection).
    Subscribe(Subscribe),
    /// Membership of a consumer group.
    Consume(Consume),
    /// A responder to requests.
    Respond(Respond),
}

/// Where a subscription stands in one topic.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Position {
    /// The offset after the last message handed to the application.
    pub(crate) next: u64,
    /// The connection that message came on.
    pub(crate) generation: u64,
    /// The offset the subscription was resumed from on a later connection,
    /// and that connection's generation.
    pub(crate) resumed: Option<(u64, u64)>,
}

/// What a stream's handle and the link share.
#[derive(Debug, Default)]
pub(crate) struct StreamShared {
    /// Subscriptions: per topic, where the application stands.
    pub(crate) positions: Mutex<HashMap<String, Position>>,
    /// Why the link ended the stream (it gave up, or the broker refused to
    /// open it again), for the application to see once.
    pub(crate) end: Mutex<Option<ClientError>>,
}

/// One subscription or consumer of the link.
pub(super) struct StreamEntry {
    id: u64,
    opening: Opening,
    events: EventSender,
    shared: Arc<StreamShared>,
    /// The generation of the connection the broker serves it on (0: none
    /// yet); held while it is being opened, so it is opened once per
    /// connection.
    opened_on: tokio::sync::Mutex<u64>,
}

impl StreamEntry {
    /// The request that opens it on the connection of `generation`.
    fn request(&self, generation: u64) -> RequestBody {
        match &self.opening {
            Opening::Subscribe(subscribe) => {
                let mut positions = lock(&self.shared.positions);
                let resume: BTreeMap<String, u64> = positions
                    .iter_mut()
                    .map(|(topic, position)| {
                        position.resumed = Some((generation, position.next));
                        (topic.clone(), position.next)
                    })
                    .collect();
                RequestBody::Subscribe(Subscribe {
                    resume,
                    ..subscribe.clone()
                })
            }
            Opening::Consume(consume) => RequestBody::Consume(consume.clone()),
            Opening::Respond(respond) => RequestBody::Respond(respond.clone()),
        }
    }

    /// Ends the stream with `error`: the application sees it once its
    /// events run out (dropping this entry drops the link's sender).
    pub(super) fn end_with(&self, error: ClientError) {
        *lock(&self.shared.end) = Some(error);
    }
}

/// A subscription's or consumer's hold on its stream: the events of each
/// connection it is opened on, and its place among what the link resumes.
/// Dropping it ends the stream on the broker.
pub(crate) struct StreamHandle {
    id: u64,
    /// Events, tagged with the generation of the connection they came on.
    events: mpsc::Receiver<(u64, SubscriptionEvent)>,
    pub(crate) shared: Arc<StreamShared>,
    pub(crate) link: Arc<Link>,
    /// The newest connection heard from: what older ones still send is
    /// dropped (the newer one sends it again, from where the application
    /// stands).
    newest: u64,
    /// No more batches: the stream ended.
    done: bool,
    /// The broker ended it: nothing to unsubscribe.
    ended_by_broker: bool,
}

/// Messages of one delivery frame.
pub(crate) struct Batch {
    /// The generation of the connection they came on.
    pub(crate) generation: u64,
    pub(crate) messages: Vec<Delivered>,
    /// Messages the broker could not deliver before these (live
    /// subscriptions that fell behind, or removed by retention).
    pub(crate) dropped: u64,
}

impl StreamHandle {
    /// The id of the stream (the same on every connection).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The next batch of messages; an error once if the stream ended with
    /// one, then `None`. A stream cut because its broker is shutting down
    /// goes on over the next connection, or ends with why the link gave up.
    pub(crate) fn poll_batch(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Batch, ClientError>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            let (generation, event) = match self.events.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(tagged)) => tagged,
                Poll::Ready(None) => {
                    // The link let go of it: why, if it said.
                    self.done = true;
                    return Poll::Ready(lock(&self.shared.end).take().map(Err));
                }
            };
            if generation < self.newest {
                continue;
            }
            self.newest = generation;
            let failure = match event {
                SubscriptionEvent::Messages { messages, dropped } => {
                    return Poll::Ready(Some(Ok(Batch {
                        generation,
                        messages,
                        dropped,
                    })))
                }
                SubscriptionEvent::End(Some(error))
                    if error.error_code() == Some(ErrorCode::ShuttingDown) =>
                {
                    continue;
                }
                SubscriptionEvent::End(None) => None,
                SubscriptionEvent::End(Some(error)) => Some(ClientError::Server(error)),
                SubscriptionEvent::Failed(reason) => Some(ClientError::Protocol(reason)),
            };
            self.done = true;
            self.ended_by_broker = true;
            // Over for good: not to be opened again on a new connection.
            lock(&self.link.streams).remove(&self.id);
            return Poll::Ready(failure.map(Err));
        }
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        self.link.close_stream(self.id, self.ended_by_broker);
    }
}

impl Link {
    /// Opens a subscription or consumer: `opening` makes its request from
    /// the id it is given. Waits while the link reconnects; a connection
    /// lost on the way leaves the stream to be opened on the next.
    pub(crate) async fn open_stream(
        self: &Arc<Self>,
        opening: impl FnOnce(u64) -> Opening,
    ) -> Result<StreamHandle, ClientError> {
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let (events, receiver) = mpsc::channel(SUBSCRIPTION_QUEUE_FRAMES);
        let shared = Arc::new(StreamShared::default());
        let entry = Arc::new(StreamEntry {
            id,
            opening: opening(id),
            events,
            shared: shared.clone(),
            opened_on: tokio::sync::Mutex::new(0),
        });
        lock(&self.streams).insert(id, entry.clone());
        // If opening fails, dropping the handle forgets the entry.
        let handle = StreamHandle {
            id,
            events: receiver,
            shared,
            link: self.clone(),
            newest: 0,
            done: false,
            ended_by_broker: false,
        };
        let mut newer_than = 0;
        loop {
            let conn = self.connected(newer_than).await?;
            match self.open_on(&entry, &conn).await {
                Ok(()) => return Ok(handle),
                Err(e) if e.is_connection_loss() => newer_than = conn.generation(),
                Err(e) => return Err(e),
            }
        }
    }

    /// Opens `entry` on `conn` unless it is open there already.
    async fn open_on(&self, entry: &StreamEntry, conn: &Connection) -> Result<(), ClientError> {
        let mut opened_on = entry.opened_on.lock().await;
        if *opened_on >= conn.generation() {
            return Ok(());
        }
        // Registered first: the stream may arrive before the response.
        conn.register_subscription(entry.id, entry.events.clone());
        let result = match self
            .request_on(conn, entry.request(conn.generation()))
            .await
        {
            Ok(
                ResponseBody::Subscribed { .. }
                | ResponseBody::Consuming { .. }
                | ResponseBody::Responding { .. },
            ) => {
                *opened_on = conn.generation();
                return Ok(());
            }
            Ok(other) => Err(ClientError::unexpected_response(other)),
            Err(e) => Err(e),
        };
        conn.unregister_subscription(entry.id);
        result
    }

    /// Opens every stream on a new connection before requests go to it.
    /// A stream the broker refuses now ends with that refusal; a lost
    /// connection is an error (the caller dials again).
    pub(super) async fn resume_streams(&self, conn: &Connection) -> Result<(), ClientError> {
        let entries: Vec<Arc<StreamEntry>> = lock(&self.streams).values().cloned().collect();
        let results =
            futures_util::future::join_all(entries.iter().map(|e| self.open_on(e, conn))).await;
        for (entry, result) in entries.iter().zip(results) {
            match result {
                Ok(()) => {}
                Err(e) if e.is_connection_loss() => return Err(e),
                Err(e) => {
                    tracing::warn!(stream = entry.id, server = %conn.address(), error = %e, "the broker refused to resume a subscription or consumer; it ends");
                    lock(&self.streams).remove(&entry.id);
                    entry.end_with(e);
                }
            }
        }
        Ok(())
    }

    /// Forgets stream `id` and, unless the broker ended it, ends it there.
    fn close_stream(&self, id: u64, ended: bool) {
        lock(&self.streams).remove(&id);
        let conn = self.current();
        if conn.unregister_subscription(id) && !ended {
            let body = RequestBody::Unsubscribe { subscription: id };
            let request = self.next_request.fetch_add(1, Ordering::Relaxed);
            if let Ok(frame) = super::encode(request, body, conn.max_frame_bytes()) {
                conn.submit_detached(frame);
            }
        }
    }
}
