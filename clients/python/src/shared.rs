//! [`Shared`]: a subscription or consumer as its Python object and the
//! calls waiting on it hold it. Each wait for the network takes every item
//! that already arrived with it, so the items after it are handed out
//! without crossing to the runtime again ([`Shared::ready`]): crossing
//! costs tens of microseconds a call, an item a few nanoseconds.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use pyo3::prelude::*;
use sluice_client::ClientError;
use tokio::sync::{watch, Mutex};

use crate::errors::{local, to_py};

/// Most items taken at once behind the one waited for.
const READY_MAX: usize = 1024;

/// A subscription or consumer. Closing it ends the waits at once and
/// drops it (which unsubscribes, or leaves the group).
pub struct Shared<T: Next> {
    inner: Mutex<Option<Source<T>>>,
    closed: watch::Sender<bool>,
}

struct Source<T: Next> {
    source: T,
    /// Arrived and not handed out yet, in order.
    ready: VecDeque<Result<T::Item, ClientError>>,
}

/// What a [`Shared`] yields.
pub trait Next: Send + 'static {
    /// One item.
    type Item: Send;
    /// The next one; `None` at the end.
    fn next(
        &mut self,
    ) -> impl std::future::Future<Output = Option<Result<Self::Item, ClientError>>> + Send;
}

impl Next for sluice_client::Subscription {
    type Item = sluice_proto::Delivered;
    fn next(
        &mut self,
    ) -> impl std::future::Future<Output = Option<Result<Self::Item, ClientError>>> + Send {
        self.recv()
    }
}

impl Next for sluice_client::Consumer {
    type Item = sluice_client::Delivery;
    fn next(
        &mut self,
    ) -> impl std::future::Future<Output = Option<Result<Self::Item, ClientError>>> + Send {
        self.recv()
    }
}

impl<T: Next> Shared<T> {
    pub fn new(source: T) -> Arc<Self> {
        Arc::new(Shared {
            inner: Mutex::new(Some(Source {
                source,
                ready: VecDeque::new(),
            })),
            closed: watch::Sender::new(false),
        })
    }

    /// Ends every wait and drops the subscription or consumer.
    pub fn close(self: &Arc<Self>) {
        if self.closed.send_replace(true) {
            return;
        }
        let this = self.clone();
        crate::wait::runtime().spawn(async move {
            this.inner.lock().await.take();
        });
    }

    /// An item that arrived already, without waiting; `None` when there is
    /// none at hand (or a call is waiting for the next: it takes them).
    pub fn ready(&self) -> Option<PyResult<T::Item>> {
        if *self.closed.borrow() {
            return None;
        }
        let mut guard = self.inner.try_lock().ok()?;
        let item = guard.as_mut()?.ready.pop_front()?;
        Some(item.map_err(to_py))
    }

    /// The next item, waiting up to `timeout` (forever if `None`);
    /// `None` once it ended or was closed.
    pub async fn next(self: Arc<Self>, timeout: Option<Duration>) -> PyResult<Option<T::Item>> {
        let next = async {
            let mut closed = self.closed.subscribe();
            tokio::select! {
                _ = closed.wait_for(|closed| *closed) => Ok(None),
                next = self.take() => next,
            }
        };
        match timeout {
            None => next.await,
            Some(limit) => tokio::time::timeout(limit, next)
                .await
                .map_err(|_| local("timeout", format!("nothing arrived within {limit:?}")))?,
        }
    }

    async fn take(&self) -> PyResult<Option<T::Item>> {
        let mut guard = self.inner.lock().await;
        let Some(source) = guard.as_mut() else {
            return Ok(None);
        };
        if let Some(item) = source.ready.pop_front() {
            return item.map(Some).map_err(to_py);
        }
        let first = source.source.next().await.transpose().map_err(to_py)?;
        if first.is_some() {
            while source.ready.len() < READY_MAX {
                match source.source.next().now_or_never() {
                    Some(Some(item)) => source.ready.push_back(item),
                    _ => break,
                }
            }
        }
        Ok(first)
    }
}
