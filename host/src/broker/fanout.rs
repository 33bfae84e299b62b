//! Fan-out of committed batches to subscribers.
//!
//! Every subscription has a [`Sink`]: an unbounded queue whose length in
//! messages is bounded by a counter, so the committer never waits. When a
//! sink is full the batch is dropped for that subscriber only and counted;
//! a live subscriber learns the count, a replaying one refills the gap from
//! the log. Publishers never slow down for a slow subscriber.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use sluice_proto::Pattern;
use tokio::sync::{mpsc, Notify};

use super::topic::StoredBatch;

/// One subscription's inbox.
pub(crate) struct Sink {
    pub id: u64,
    pub pattern: Pattern,
    tx: mpsc::UnboundedSender<Arc<StoredBatch>>,
    /// Messages queued and not yet taken by the subscription.
    queued: AtomicUsize,
    max_queued: usize,
    /// Messages dropped since the subscription last looked.
    dropped: AtomicU64,
    /// Set when something was dropped; a replaying subscription then refills.
    overflowed: AtomicBool,
    /// Wakes the subscription after an overflow (nothing arrives to wake it).
    pub wake: Notify,
}

impl Sink {
    pub fn new(
        id: u64,
        pattern: Pattern,
        max_queued: usize,
    ) -> (Arc<Sink>, mpsc::UnboundedReceiver<Arc<StoredBatch>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = Arc::new(Sink {
            id,
            pattern,
            tx,
            queued: AtomicUsize::new(0),
            max_queued,
            dropped: AtomicU64::new(0),
            overflowed: AtomicBool::new(false),
            wake: Notify::new(),
        });
        (sink, rx)
    }

    /// Queues a batch, or drops it if this subscriber is too far behind.
    pub fn offer(&self, batch: &Arc<StoredBatch>) {
        let n = batch.records.len();
        if self.queued.load(Ordering::Relaxed) + n > self.max_queued {
            self.dropped.fetch_add(n as u64, Ordering::Relaxed);
            self.overflowed.store(true, Ordering::Release);
            self.wake.notify_one();
            return;
        }
        self.queued.fetch_add(n, Ordering::Relaxed);
        let _ = self.tx.send(batch.clone());
    }

    /// The subscription took a batch of `n` messages off the queue.
    pub fn taken(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
    }

    /// Messages dropped since the last call.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }

    /// Whether something was dropped since the last call.
    pub fn take_overflowed(&self) -> bool {
        self.overflowed.swap(false, Ordering::AcqRel)
    }
}

/// All sinks. A generation number lets topics cache which sinks match them.
#[derive(Default)]
pub(crate) struct SubscriberRegistry {
    sinks: RwLock<Vec<Arc<Sink>>>,
    generation: AtomicU64,
}

impl SubscriberRegistry {
    pub fn register(&self, sink: Arc<Sink>) {
        let mut sinks = self.sinks.write().unwrap_or_else(|e| e.into_inner());
        sinks.push(sink);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn unregister(&self, id: u64) {
        let mut sinks = self.sinks.write().unwrap_or_else(|e| e.into_inner());
        sinks.retain(|s| s.id != id);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Live subscriptions, for metrics.
    pub fn len(&self) -> usize {
        self.sinks.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn matching(&self, topic: &str) -> Vec<Arc<Sink>> {
        let sinks = self.sinks.read().unwrap_or_else(|e| e.into_inner());
        sinks
            .iter()
            .filter(|s| s.pattern.matches(topic))
            .cloned()
            .collect()
    }
}

/// Sinks matching one topic, shared by the committer's fan-out.
pub(crate) type Sinks = Arc<Vec<Arc<Sink>>>;

/// A topic's cached list of matching sinks, with the registry generation
/// it was computed at.
#[derive(Default)]
pub(crate) struct FanoutCache {
    cached: Mutex<Option<(u64, Sinks)>>,
}

impl FanoutCache {
    /// The sinks matching `topic`, recomputed only when the registry changed.
    pub fn sinks_for(&self, topic: &str, registry: &SubscriberRegistry) -> Sinks {
        let generation = registry.generation.load(Ordering::SeqCst);
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((g, sinks)) = cached.as_ref() {
            if *g == generation {
                return sinks.clone();
            }
        }
        let sinks = Arc::new(registry.matching(topic));
        *cached = Some((generation, sinks.clone()));
        sinks
    }
}
