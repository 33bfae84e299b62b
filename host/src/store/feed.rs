//! [`Feed`]: committed batches of the topics matching a pattern, as they
//! are committed, for one reader (a subscription).
//!
//! A feed is an unbounded queue whose length in messages is bounded by a
//! counter, so the store's commit step never waits for a reader. When the
//! queue is full a batch is dropped for that reader only and counted; a live
//! subscriber learns the count, a replaying one refills the gap with reads.
//! Publishers never slow down for a slow subscriber.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use sluice_proto::Pattern;
use tokio::sync::{mpsc, Notify};

use super::record::Record;

/// Messages committed together, as readers and feeds see them.
#[derive(Debug)]
pub struct StoredBatch {
    /// The topic.
    pub topic: Arc<str>,
    /// Which life of the topic.
    pub incarnation: u64,
    /// The records, offsets ascending and dense.
    pub records: Vec<Record>,
}

impl StoredBatch {
    /// Offset of the first record.
    pub fn first_offset(&self) -> u64 {
        self.records.first().map_or(0, |r| r.offset)
    }

    /// One past the offset of the last record.
    pub fn end_offset(&self) -> u64 {
        self.records.last().map_or(0, |r| r.offset + 1)
    }
}

/// The sending side of a feed, held by the store.
pub struct Inbox {
    id: u64,
    pattern: Pattern,
    tx: mpsc::UnboundedSender<Arc<StoredBatch>>,
    /// Messages queued and not yet taken by the reader.
    queued: AtomicUsize,
    max_queued: usize,
    /// Messages dropped since the reader last looked.
    dropped: AtomicU64,
    /// Set when something was dropped; a replaying reader then refills.
    overflowed: AtomicBool,
    /// Wakes the reader after an overflow (nothing arrives to wake it).
    wake: Notify,
}

impl Inbox {
    /// Which feed this is (unique per store).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The topics it wants.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// Queues a batch, or drops it if the reader is too far behind.
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
}

/// Called when a feed is dropped, so the store stops offering to it.
pub type Unregister = Box<dyn FnOnce(u64) + Send + Sync>;

/// The reading side of a feed. Dropping it unregisters it.
pub struct Feed {
    inbox: Arc<Inbox>,
    rx: mpsc::UnboundedReceiver<Arc<StoredBatch>>,
    unregister: Option<Unregister>,
}

impl Feed {
    /// A new feed: the inbox for the store to offer to, and the feed.
    pub fn new(
        id: u64,
        pattern: Pattern,
        max_queued: usize,
        unregister: Unregister,
    ) -> (Arc<Inbox>, Feed) {
        let (tx, rx) = mpsc::unbounded_channel();
        let inbox = Arc::new(Inbox {
            id,
            pattern,
            tx,
            queued: AtomicUsize::new(0),
            max_queued,
            dropped: AtomicU64::new(0),
            overflowed: AtomicBool::new(false),
            wake: Notify::new(),
        });
        let feed = Feed {
            inbox: inbox.clone(),
            rx,
            unregister: Some(unregister),
        };
        (inbox, feed)
    }

    /// The pattern.
    pub fn pattern(&self) -> &Pattern {
        &self.inbox.pattern
    }

    /// A batch if one is queued.
    pub fn try_next(&mut self) -> Option<Arc<StoredBatch>> {
        let batch = self.rx.try_recv().ok()?;
        self.taken(&batch);
        Some(batch)
    }

    /// Waits for a batch, or for an overflow (`Ok(None)`); `Err` when the
    /// store is gone. Cancel-safe.
    pub async fn next(&mut self) -> Result<Option<Arc<StoredBatch>>, Closed> {
        tokio::select! {
            batch = self.rx.recv() => match batch {
                Some(batch) => {
                    self.taken(&batch);
                    Ok(Some(batch))
                }
                None => Err(Closed),
            },
            () = self.inbox.wake.notified() => Ok(None),
        }
    }

    fn taken(&self, batch: &StoredBatch) {
        self.inbox
            .queued
            .fetch_sub(batch.records.len(), Ordering::Relaxed);
    }

    /// Messages dropped since the last call.
    pub fn take_dropped(&self) -> u64 {
        self.inbox.dropped.swap(0, Ordering::Relaxed)
    }

    /// Whether something was dropped since the last call.
    pub fn take_overflowed(&self) -> bool {
        self.inbox.overflowed.swap(false, Ordering::AcqRel)
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        if let Some(unregister) = self.unregister.take() {
            unregister(self.inbox.id);
        }
    }
}

/// The store behind a feed is gone (shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: u64) -> Arc<StoredBatch> {
        Arc::new(StoredBatch {
            topic: "t".into(),
            incarnation: 1,
            records: (0..n)
                .map(|offset| Record {
                    offset,
                    timestamp_ms: 0,
                    key: None,
                    headers: Vec::new(),
                    payload: bytes::Bytes::new(),
                    id: None,
                })
                .collect(),
        })
    }

    #[tokio::test]
    async fn a_full_feed_drops_and_counts_then_wakes_its_reader() {
        let pattern = Pattern::parse("t").expect("valid pattern");
        let gone = Arc::new(AtomicU64::new(0));
        let seen = gone.clone();
        let (inbox, mut feed) = Feed::new(
            7,
            pattern,
            3,
            Box::new(move |id| seen.store(id, Ordering::SeqCst)),
        );
        inbox.offer(&batch(2));
        inbox.offer(&batch(2)); // 4 > 3: dropped
        assert_eq!(feed.try_next().map(|b| b.records.len()), Some(2));
        assert!(feed.try_next().is_none());
        assert!(
            matches!(feed.next().await, Ok(None)),
            "the overflow wakes the reader"
        );
        assert!(feed.take_overflowed());
        assert_eq!(feed.take_dropped(), 2);
        inbox.offer(&batch(3)); // room again
        assert_eq!(feed.try_next().map(|b| b.records.len()), Some(3));
        drop(feed);
        assert_eq!(gone.load(Ordering::SeqCst), 7, "dropping unregisters");
    }
}
