//! [`DedupIndex`]: message ids seen by one topic inside its
//! de-duplication window, so a producer that retries a publish (same id)
//! gets the first offset back instead of a second copy.
//!
//! The index lives in memory under the topic's writer lock and is rebuilt
//! at start from the log's tail (the records of the last window), so it
//! survives restarts and crashes.
//!
//! Every publish carries an id (clients make one when the caller gives
//! none), so this is on the hot path: each id is stored once (the queue of
//! oldest-first holds its hash, not a copy), and hashed with foldhash,
//! randomly seeded per index, instead of SipHash.

use std::collections::VecDeque;
use std::hash::BuildHasher;

use hashbrown::HashTable;

/// Memory an id costs beside its bytes (table and queue entries), roughly.
const ENTRY_OVERHEAD: usize = 72;

/// One id and where it was first stored.
#[derive(Debug)]
struct Entry {
    id: Box<str>,
    offset: u64,
    ts_ms: i64,
}

/// The queue's record of an entry: enough to find it again and to know
/// whether it is still the live one.
#[derive(Debug)]
struct Queued {
    ts_ms: i64,
    offset: u64,
    hash: u64,
    len: usize,
}

/// Ids seen within the window, oldest first, within a memory cap.
#[derive(Debug, Default)]
pub(crate) struct DedupIndex {
    window_ms: u64,
    /// Most bytes the ids may take; past it the oldest are forgotten early.
    max_bytes: usize,
    bytes: usize,
    hasher: foldhash::quality::RandomState,
    by_id: HashTable<Entry>,
    order: VecDeque<Queued>,
}

impl DedupIndex {
    /// An empty index for a window; 0 turns de-duplication off.
    pub fn new(window_ms: u64, max_bytes: usize) -> Self {
        DedupIndex {
            window_ms,
            max_bytes,
            ..DedupIndex::default()
        }
    }

    /// True if de-duplication is on.
    pub fn enabled(&self) -> bool {
        self.window_ms > 0
    }

    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    /// Drops the oldest entry of the queue (and its id, unless the id was
    /// stored again since).
    fn pop_oldest(&mut self) {
        if let Some(q) = self.order.pop_front() {
            self.bytes = self.bytes.saturating_sub(q.len + ENTRY_OVERHEAD);
            if let Ok(entry) = self
                .by_id
                .find_entry(q.hash, |e| e.offset == q.offset && e.ts_ms == q.ts_ms)
            {
                entry.remove();
            }
        }
    }

    /// Forgets ids older than the window.
    pub fn expire(&mut self, now_ms: i64) {
        let horizon = now_ms.saturating_sub(self.window_ms as i64);
        while self.order.front().is_some_and(|q| q.ts_ms < horizon) {
            self.pop_oldest();
        }
    }

    /// The offset first stored under `id`, if within the window.
    pub fn get(&self, id: &str) -> Option<u64> {
        self.by_id
            .find(self.hash(id), |e| &*e.id == id)
            .map(|e| e.offset)
    }

    /// Records that `id` was stored at `offset` at `ts_ms`. Returns how
    /// many older ids were forgotten before their time to stay within the
    /// memory cap.
    pub fn insert(&mut self, id: &str, offset: u64, ts_ms: i64) -> usize {
        if !self.enabled() {
            return 0;
        }
        let hash = self.hash(id);
        if self.by_id.find(hash, |e| &*e.id == id).is_some() {
            return 0;
        }
        let hasher = &self.hasher;
        self.by_id.insert_unique(
            hash,
            Entry {
                id: id.into(),
                offset,
                ts_ms,
            },
            |e| hasher.hash_one(&*e.id),
        );
        self.bytes += id.len() + ENTRY_OVERHEAD;
        self.order.push_back(Queued {
            ts_ms,
            offset,
            hash,
            len: id.len(),
        });
        let mut evicted = 0;
        while self.bytes > self.max_bytes && self.order.len() > 1 {
            self.pop_oldest();
            evicted += 1;
        }
        evicted
    }

    /// Forgets that `id` was stored at `offset` (it was not made durable).
    /// An id first stored at another offset stays.
    pub fn forget(&mut self, id: &str, offset: u64) {
        // Its queue entry stays until it expires; it no longer matches.
        if let Ok(entry) = self
            .by_id
            .find_entry(self.hash(id), |e| &*e.id == id && e.offset == offset)
        {
            entry.remove();
        }
    }

    /// Ids tracked.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_expire_after_the_window() {
        let mut index = DedupIndex::new(1_000, usize::MAX);
        index.insert("a", 0, 10_000);
        index.insert("b", 1, 10_500);
        index.expire(10_900);
        assert_eq!(index.get("a"), Some(0));
        index.expire(11_200);
        assert_eq!(index.get("a"), None);
        assert_eq!(index.get("b"), Some(1));
        index.expire(20_000);
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn first_offset_wins() {
        let mut index = DedupIndex::new(1_000, usize::MAX);
        index.insert("a", 3, 0);
        index.insert("a", 3, 1);
        assert_eq!(index.get("a"), Some(3));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn a_zero_window_is_off() {
        let mut index = DedupIndex::new(0, usize::MAX);
        index.insert("a", 0, 0);
        assert_eq!(index.get("a"), None);
        assert!(!index.enabled());
    }
}

#[cfg(test)]
mod cap_tests {
    use super::*;

    #[test]
    fn the_cap_forgets_the_oldest_first() {
        // Room for about three ids.
        let mut index = DedupIndex::new(60_000, 3 * (ENTRY_OVERHEAD + 2));
        let mut evicted = 0;
        for i in 0..5u64 {
            evicted += index.insert(&format!("i{i}"), i, i as i64);
        }
        assert_eq!(evicted, 2);
        assert_eq!(index.get("i0"), None);
        assert_eq!(index.get("i1"), None);
        assert_eq!(index.get("i4"), Some(4));
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn a_forgotten_id_stored_again_outlives_its_old_entry() {
        let mut index = DedupIndex::new(1_000, usize::MAX);
        index.insert("a", 0, 100);
        index.forget("a", 0);
        assert_eq!(index.get("a"), None);
        index.insert("a", 7, 900);
        // The old entry expires; the new one stays.
        index.expire(1_200);
        assert_eq!(index.get("a"), Some(7));
        index.expire(2_000);
        assert_eq!(index.get("a"), None);
    }

    #[test]
    fn forget_keeps_an_id_of_another_offset() {
        let mut index = DedupIndex::new(1_000, usize::MAX);
        index.insert("a", 3, 0);
        index.forget("a", 4);
        assert_eq!(index.get("a"), Some(3));
    }
}
