//! [`Feed`]: committed batches of the topics matching a pattern, as they
//! are committed, for one reader (a subscription).
//!
//! A feed is an unbounded queue whose length is bounded by two counters,
//! messages and bytes, so the store's commit step never waits for a reader.
//! A batch the reader takes stays counted until the reader lets go of it
//! ([`Queued`] is dropped), so what a slow reader holds back bounds what it
//! is offered too. When either bound would be passed a batch is dropped for
//! that reader only and counted; a live subscriber learns the count, a
//! replaying one refills the gap with reads. Publishers never slow down for
//! a slow subscriber.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use sluice_proto::Pattern;
use tokio::sync::{mpsc, Notify};

use super::record::Record;
use crate::metrics::SubscriberQueue;

/// Bytes a message is counted for beyond its key, headers, id and
/// payload: the record's fixed fields and its share of the batch.
const MESSAGE_OVERHEAD_BYTES: usize = 64;

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

    /// What the records occupy in memory, as the feed bounds count it:
    /// key, headers, id and payload of each, plus a fixed overhead.
    pub fn memory_bytes(&self) -> usize {
        self.records.iter().map(record_bytes).sum()
    }
}

fn record_bytes(r: &Record) -> usize {
    MESSAGE_OVERHEAD_BYTES
        + r.payload.len()
        + r.key.as_ref().map_or(0, |k| k.len())
        + r.id.as_ref().map_or(0, |id| id.len())
        + r.headers
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum::<usize>()
}

/// The sending side of a feed, held by the store.
pub struct Inbox {
    id: u64,
    pattern: Pattern,
    /// Each batch with the bytes it was counted for.
    tx: mpsc::UnboundedSender<(Arc<StoredBatch>, usize)>,
    /// Messages queued or held by the reader.
    queued: AtomicUsize,
    /// Their bytes ([`StoredBatch::memory_bytes`]).
    queued_bytes: AtomicUsize,
    max_queued: usize,
    /// Unbounded until the reader sets it ([`Feed::set_max_bytes`]).
    max_bytes: AtomicUsize,
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

    /// Queues a batch, or drops it if the reader is too far behind: if it
    /// would take the messages or the bytes held for the reader past their
    /// bound. A batch offered while nothing is held is always taken, so a
    /// batch larger than a bound still reaches a reader that keeps up.
    ///
    /// Committers of different topics may offer at once; the check and the
    /// count are not one step, so the bounds can be passed by at most one
    /// batch per concurrent committer.
    pub fn offer(&self, batch: &Arc<StoredBatch>) {
        let n = batch.records.len();
        let bytes = batch.memory_bytes();
        let queued = self.queued.load(Ordering::Relaxed);
        let queued_bytes = self.queued_bytes.load(Ordering::Relaxed);
        let empty = queued == 0 && queued_bytes == 0;
        let fits = queued + n <= self.max_queued
            && queued_bytes + bytes <= self.max_bytes.load(Ordering::Relaxed);
        if !empty && !fits {
            self.dropped.fetch_add(n as u64, Ordering::Relaxed);
            self.overflowed.store(true, Ordering::Release);
            self.wake.notify_one();
            return;
        }
        // Counted before it is sent, so the reader's release never comes first.
        self.queued.fetch_add(n, Ordering::Relaxed);
        self.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        if self.tx.send((batch.clone(), bytes)).is_err() {
            // The reader is gone; nothing will release the count.
            self.release(n, bytes);
        }
    }

    fn release(&self, messages: usize, bytes: usize) {
        self.queued.fetch_sub(messages, Ordering::Relaxed);
        self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl SubscriberQueue for Inbox {
    fn held(&self) -> (usize, usize) {
        (
            self.queued.load(Ordering::Relaxed),
            self.queued_bytes.load(Ordering::Relaxed),
        )
    }
}

/// A batch taken from a feed. It counts against the feed's bounds until it
/// is dropped: hand its [`Queued::batch`] on and drop it once the batch
/// leaves the reader's own queue.
pub struct Queued {
    batch: Arc<StoredBatch>,
    bytes: usize,
    inbox: Arc<Inbox>,
}

impl Queued {
    /// The batch.
    pub fn batch(&self) -> &Arc<StoredBatch> {
        &self.batch
    }

    /// The bytes it is counted for ([`StoredBatch::memory_bytes`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Deref for Queued {
    type Target = StoredBatch;

    fn deref(&self) -> &StoredBatch {
        &self.batch
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.inbox.release(self.batch.records.len(), self.bytes);
    }
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued")
            .field("topic", &self.batch.topic)
            .field(
                "offsets",
                &(self.batch.first_offset()..self.batch.end_offset()),
            )
            .field("bytes", &self.bytes)
            .finish()
    }
}

/// Called when a feed is dropped, so the store stops offering to it.
pub type Unregister = Box<dyn FnOnce(u64) + Send + Sync>;

/// The reading side of a feed. Dropping it unregisters it.
pub struct Feed {
    inbox: Arc<Inbox>,
    rx: mpsc::UnboundedReceiver<(Arc<StoredBatch>, usize)>,
    unregister: Option<Unregister>,
}

impl Feed {
    /// A new feed holding at most `max_queued` messages (and no byte bound
    /// until [`Feed::set_max_bytes`]): the inbox for the store to offer to,
    /// and the feed.
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
            queued_bytes: AtomicUsize::new(0),
            max_queued,
            max_bytes: AtomicUsize::new(usize::MAX),
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

    /// Bounds the bytes held for this reader ([`StoredBatch::memory_bytes`]
    /// of what is queued and of the [`Queued`] batches it holds).
    pub fn set_max_bytes(&self, max_bytes: usize) {
        self.inbox.max_bytes.store(max_bytes, Ordering::Relaxed);
    }

    /// The pattern.
    pub fn pattern(&self) -> &Pattern {
        &self.inbox.pattern
    }

    /// Messages and bytes held for this reader now.
    pub fn held(&self) -> (usize, usize) {
        self.inbox.held()
    }

    /// What the metrics read at scrape time: the messages and bytes held
    /// for this reader, for as long as the feed lives.
    pub fn queue(&self) -> Weak<dyn SubscriberQueue> {
        let inbox: Arc<dyn SubscriberQueue> = self.inbox.clone();
        Arc::downgrade(&inbox)
    }

    /// A batch if one is queued.
    pub fn try_next(&mut self) -> Option<Queued> {
        let taken = self.rx.try_recv().ok()?;
        Some(self.queued(taken))
    }

    /// Waits for a batch, or for an overflow (`Ok(None)`); `Err` when the
    /// store is gone. Cancel-safe.
    pub async fn next(&mut self) -> Result<Option<Queued>, Closed> {
        tokio::select! {
            taken = self.rx.recv() => match taken {
                Some(taken) => Ok(Some(self.queued(taken))),
                None => Err(Closed),
            },
            () = self.inbox.wake.notified() => Ok(None),
        }
    }

    fn queued(&self, (batch, bytes): (Arc<StoredBatch>, usize)) -> Queued {
        Queued {
            batch,
            bytes,
            inbox: self.inbox.clone(),
        }
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
        // Whatever is still queued is let go, so a gone reader holds
        // nothing (the store may keep the inbox a while in its caches).
        self.rx.close();
        while let Ok((batch, bytes)) = self.rx.try_recv() {
            self.inbox.release(batch.records.len(), bytes);
        }
    }
}

/// The store behind a feed is gone (shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` records of `payload` bytes each.
    fn batch_of(n: u64, payload: usize) -> Arc<StoredBatch> {
        Arc::new(StoredBatch {
            topic: "t".into(),
            incarnation: 1,
            records: (0..n)
                .map(|offset| Record {
                    offset,
                    timestamp_ms: 0,
                    key: None,
                    headers: Vec::new(),
                    payload: bytes::Bytes::from(vec![0u8; payload]),
                    id: None,
                })
                .collect(),
        })
    }

    fn batch(n: u64) -> Arc<StoredBatch> {
        batch_of(n, 0)
    }

    fn feed(max_queued: usize) -> (Arc<Inbox>, Feed) {
        let pattern = Pattern::parse("t").expect("valid pattern");
        Feed::new(1, pattern, max_queued, Box::new(|_| {}))
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

    #[test]
    fn memory_bytes_count_key_headers_id_and_payload() {
        let mut records = batch_of(2, 100).records.clone();
        records[1].key = Some(bytes::Bytes::from_static(b"key"));
        records[1].headers = vec![("ab".into(), "cde".into())];
        records[1].id = Some("id-1".into());
        let batch = StoredBatch {
            topic: "t".into(),
            incarnation: 1,
            records,
        };
        assert_eq!(
            batch.memory_bytes(),
            2 * MESSAGE_OVERHEAD_BYTES + 100 + (100 + 3 + 5 + 4)
        );
    }

    #[test]
    fn bytes_past_the_bound_are_dropped_and_counted_in_messages() {
        let (inbox, feed) = feed(1_000);
        let one = batch_of(2, 1_000).memory_bytes();
        feed.set_max_bytes(2 * one + one / 2);
        inbox.offer(&batch_of(2, 1_000));
        inbox.offer(&batch_of(2, 1_000));
        assert_eq!(feed.held(), (4, 2 * one));
        inbox.offer(&batch_of(2, 1_000)); // 3 * one > the bound
        assert_eq!(feed.held(), (4, 2 * one), "the dropped batch is not held");
        assert!(feed.take_overflowed());
        assert_eq!(feed.take_dropped(), 2, "drops are counted in messages");
        inbox.offer(&batch_of(1, 10)); // small enough for what is left
        assert_eq!(feed.held(), (5, 2 * one + batch_of(1, 10).memory_bytes()));
    }

    #[test]
    fn a_taken_batch_counts_until_the_reader_lets_go_of_it() {
        let (inbox, mut feed) = feed(1_000);
        let one = batch_of(1, 1_000).memory_bytes();
        feed.set_max_bytes(one);
        inbox.offer(&batch_of(1, 1_000));
        let held = feed.try_next().expect("queued");
        assert_eq!(held.bytes(), one);
        inbox.offer(&batch_of(1, 1_000));
        assert!(
            feed.take_overflowed(),
            "a batch taken but held still counts against the bound"
        );
        assert_eq!(feed.held(), (1, one));
        let batch = held.batch().clone();
        drop(held);
        assert_eq!(feed.held(), (0, 0), "letting go releases it");
        assert_eq!(batch.records.len(), 1, "the batch itself lives on");
        inbox.offer(&batch_of(1, 1_000));
        assert!(feed.try_next().is_some(), "room again");
    }

    #[test]
    fn a_batch_larger_than_the_bound_is_taken_when_nothing_is_held() {
        let (inbox, mut feed) = feed(2);
        feed.set_max_bytes(1_024);
        inbox.offer(&batch_of(5, 4_096));
        let big = feed.try_next().expect("taken though over both bounds");
        assert_eq!(big.records.len(), 5);
        inbox.offer(&batch_of(1, 1));
        assert!(feed.try_next().is_none(), "nothing more while it is held");
        assert_eq!(feed.take_dropped(), 1);
        drop(big);
        inbox.offer(&batch_of(1, 1));
        assert!(feed.try_next().is_some());
    }

    #[test]
    fn a_dropped_feed_releases_what_was_queued() {
        let (inbox, feed) = feed(1_000);
        feed.set_max_bytes(1 << 20);
        let queue = feed.queue();
        inbox.offer(&batch_of(3, 100));
        inbox.offer(&batch_of(3, 100));
        let probe = queue.upgrade().expect("the inbox is alive");
        assert_eq!(probe.held().0, 6);
        drop(feed);
        assert_eq!(probe.held(), (0, 0));
        inbox.offer(&batch_of(3, 100));
        assert_eq!(probe.held(), (0, 0), "offers to a gone reader are not held");
        drop((probe, inbox));
        assert!(queue.upgrade().is_none(), "metrics do not keep the inbox");
    }
}
