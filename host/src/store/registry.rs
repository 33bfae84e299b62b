//! Which feeds want which topics: the fan-out of committed batches, shared
//! by both backends. A generation number lets each topic cache the inboxes that
//! match it, so a commit does no pattern matching.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use sluice_proto::Pattern;

use crate::store::feed::{Feed, Inbox};
use crate::sync::{lock, read, write};

/// Every live feed's inbox.
#[derive(Default)]
pub(crate) struct SubscriberRegistry {
    inboxes: RwLock<Vec<Arc<Inbox>>>,
    generation: AtomicU64,
    /// The id of the last feed made.
    last_id: AtomicU64,
}

impl SubscriberRegistry {
    /// A new feed on `pattern` (see [`Feed::new`]), offered every batch of
    /// the topics it matches until it is dropped.
    pub fn feed(self: &Arc<Self>, pattern: Pattern, max_queued: usize) -> Feed {
        let id = self.last_id.fetch_add(1, Ordering::Relaxed) + 1;
        let registry = Arc::downgrade(self);
        let (inbox, feed) = Feed::new(
            id,
            pattern,
            max_queued,
            Box::new(move |id| {
                if let Some(registry) = registry.upgrade() {
                    registry.unregister(id);
                }
            }),
        );
        write(&self.inboxes).push(inbox);
        self.generation.fetch_add(1, Ordering::SeqCst);
        feed
    }

    fn unregister(&self, id: u64) {
        write(&self.inboxes).retain(|s| s.id() != id);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether a live feed wants `topic`.
    pub fn wants(&self, topic: &str) -> bool {
        read(&self.inboxes)
            .iter()
            .any(|s| s.pattern().matches(topic))
    }

    /// Live feeds, for metrics.
    pub fn len(&self) -> usize {
        read(&self.inboxes).len()
    }

    fn matching(&self, topic: &str) -> Vec<Arc<Inbox>> {
        read(&self.inboxes)
            .iter()
            .filter(|s| s.pattern().matches(topic))
            .cloned()
            .collect()
    }
}

/// Inboxes matching one topic, shared by the committer's fan-out.
pub(crate) type Inboxes = Arc<Vec<Arc<Inbox>>>;

/// A topic's cached list of matching inboxes, with the registry generation
/// it was computed at.
#[derive(Default)]
pub(crate) struct FanoutCache {
    cached: Mutex<Option<(u64, Inboxes)>>,
}

impl FanoutCache {
    /// The inboxes matching `topic`, recomputed only when the registry
    /// changed.
    pub fn inboxes_for(&self, topic: &str, registry: &SubscriberRegistry) -> Inboxes {
        let generation = registry.generation.load(Ordering::SeqCst);
        let mut cached = lock(&self.cached);
        if let Some((g, inboxes)) = cached.as_ref() {
            if *g == generation {
                return inboxes.clone();
            }
        }
        let inboxes = Arc::new(registry.matching(topic));
        *cached = Some((generation, inboxes.clone()));
        inboxes
    }
}
