//! [`Shared`]: a subscription or consumer as its Python object and the
//! calls waiting on it hold it.
//!
//! Receiving is two steps. [`Shared::fill`] waits until an item is at
//! hand, taking every item that arrived with the one it waited for, and
//! never hands one out; [`Shared::take`] hands out an item at hand, as a
//! plain call. A wait that is cancelled (an asyncio task, a timeout,
//! Ctrl-C) therefore loses nothing: what it took waits for the next
//! `take`. And the items after the first are handed out without crossing
//! to the runtime: crossing costs tens of microseconds a call, an item at
//! hand a few hundred nanoseconds.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use sluice_client::ClientError;
use tokio::sync::{watch, Mutex};

use crate::errors::{Error, Result};

/// Most items taken at once behind the one waited for.
const AT_HAND_MAX: usize = 1024;

/// A subscription or consumer. Closing it ends the waits at once and
/// drops it (which unsubscribes, or leaves the group).
pub struct Shared<T: Next> {
    inner: Mutex<Option<Source<T>>>,
    closed: watch::Sender<bool>,
    /// The broker ended it (or it failed for good): nothing more comes.
    ended: AtomicBool,
    /// Live messages dropped because this subscriber fell behind.
    dropped: AtomicU64,
}

struct Source<T: Next> {
    source: T,
    /// Arrived and not handed out yet, in order.
    at_hand: VecDeque<std::result::Result<T::Item, ClientError>>,
}

/// What a [`Shared`] yields.
pub trait Next: Send + 'static {
    /// One item.
    type Item: Send;
    /// The next one; `None` at the end.
    fn next(
        &mut self,
    ) -> impl std::future::Future<Output = Option<std::result::Result<Self::Item, ClientError>>> + Send;
    /// Whether `item` may still be handed out.
    fn usable(_item: &Self::Item) -> bool {
        true
    }
    /// Messages it dropped so far.
    fn dropped(&self) -> u64 {
        0
    }
}

impl Next for sluice_client::Subscription {
    type Item = sluice_proto::Delivered;
    fn next(
        &mut self,
    ) -> impl std::future::Future<Output = Option<std::result::Result<Self::Item, ClientError>>> + Send
    {
        self.recv()
    }
    fn dropped(&self) -> u64 {
        sluice_client::Subscription::dropped(self)
    }
}

impl Next for sluice_client::Consumer {
    type Item = sluice_client::Delivery;
    fn next(
        &mut self,
    ) -> impl std::future::Future<Output = Option<std::result::Result<Self::Item, ClientError>>> + Send
    {
        self.recv()
    }
    /// A delivery that came on a connection lost since was released by the
    /// broker, which delivers it again: handing it out would only make it
    /// fail to settle.
    fn usable(item: &Self::Item) -> bool {
        item.is_current()
    }
}

impl Next for sluice_client::Responder {
    type Item = sluice_client::IncomingRequest;
    fn next(
        &mut self,
    ) -> impl std::future::Future<Output = Option<std::result::Result<Self::Item, ClientError>>> + Send
    {
        self.recv()
    }
}

impl<T: Next> Shared<T> {
    pub fn new(source: T) -> Arc<Self> {
        Arc::new(Shared {
            inner: Mutex::new(Some(Source {
                source,
                at_hand: VecDeque::new(),
            })),
            closed: watch::Sender::new(false),
            ended: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        })
    }

    /// Live messages dropped because this subscriber fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// An item at hand, without waiting; `None` when there is none (or a
    /// wait is taking them in right now: [`Shared::fill`] then returns at
    /// once).
    pub fn take(&self) -> Option<Result<T::Item>> {
        if *self.closed.borrow() {
            return None;
        }
        let mut guard = self.inner.try_lock().ok()?;
        let at_hand = &mut guard.as_mut()?.at_hand;
        loop {
            match at_hand.pop_front()? {
                Ok(item) if !T::usable(&item) => continue,
                item => return Some(item.map_err(Error::from)),
            }
        }
    }

    /// Whether nothing more comes: closed, or ended with nothing at hand.
    pub fn is_over(&self) -> bool {
        *self.closed.borrow()
            || (self.ended.load(Ordering::Acquire)
                && self
                    .inner
                    .try_lock()
                    .is_ok_and(|g| g.as_ref().is_none_or(|s| s.at_hand.is_empty())))
    }

    /// Waits up to `timeout` (forever if `None`) until an item is at hand
    /// or nothing more comes. Takes in items; hands none out.
    pub async fn fill(self: Arc<Self>, timeout: Option<Duration>) -> Result<()> {
        let fill = async {
            let mut closed = self.closed.subscribe();
            tokio::select! {
                biased;
                _ = closed.wait_for(|closed| *closed) => {}
                () = self.take_in() => {}
            }
        };
        match timeout {
            None => {
                fill.await;
                Ok(())
            }
            Some(limit) => tokio::time::timeout(limit, fill)
                .await
                .map_err(|_| Error::Timeout(limit)),
        }
    }

    async fn take_in(&self) {
        let mut guard = self.inner.lock().await;
        let Some(source) = guard.as_mut() else {
            return;
        };
        if !source.at_hand.is_empty() {
            return;
        }
        match source.source.next().await {
            None => self.ended.store(true, Ordering::Release),
            Some(first) => {
                let failed = first.is_err();
                source.at_hand.push_back(first);
                while !failed && source.at_hand.len() < AT_HAND_MAX {
                    match source.source.next().now_or_never() {
                        Some(Some(item)) => source.at_hand.push_back(item),
                        _ => break,
                    }
                }
            }
        }
        self.dropped
            .store(source.source.dropped(), Ordering::Relaxed);
    }

    /// Ends every wait, then drops the subscription or consumer, and
    /// returns once it is dropped.
    pub async fn close(self: Arc<Self>) {
        self.closed.send_replace(true);
        self.inner.lock().await.take();
    }
}
