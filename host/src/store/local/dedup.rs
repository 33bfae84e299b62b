//! [`DedupIndex`]: message ids seen by one topic inside its
//! de-duplication window, so a producer that retries a publish (same id)
//! gets the first offset back instead of a second copy.
//!
//! The index lives in memory under the topic's writer lock and is rebuilt
//! at start from the log's tail (the records of the last window), so it
//! survives restarts and crashes.

use std::collections::{HashMap, VecDeque};

/// Ids seen within the window, oldest first.
#[derive(Debug, Default)]
pub(crate) struct DedupIndex {
    window_ms: u64,
    by_id: HashMap<String, u64>,
    order: VecDeque<(i64, String)>,
}

impl DedupIndex {
    /// An empty index for a window; 0 turns de-duplication off.
    pub fn new(window_ms: u64) -> Self {
        DedupIndex {
            window_ms,
            ..DedupIndex::default()
        }
    }

    /// True if de-duplication is on.
    pub fn enabled(&self) -> bool {
        self.window_ms > 0
    }

    /// Forgets ids older than the window.
    pub fn expire(&mut self, now_ms: i64) {
        let horizon = now_ms.saturating_sub(self.window_ms as i64);
        while let Some((ts, _)) = self.order.front() {
            if *ts >= horizon {
                break;
            }
            if let Some((_, id)) = self.order.pop_front() {
                self.by_id.remove(&id);
            }
        }
    }

    /// The offset first stored under `id`, if within the window.
    pub fn get(&self, id: &str) -> Option<u64> {
        self.by_id.get(id).copied()
    }

    /// Records that `id` was stored at `offset` at `ts_ms`.
    pub fn insert(&mut self, id: String, offset: u64, ts_ms: i64) {
        if !self.enabled() {
            return;
        }
        if self.by_id.insert(id.clone(), offset).is_none() {
            self.order.push_back((ts_ms, id));
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
        let mut index = DedupIndex::new(1_000);
        index.insert("a".into(), 0, 10_000);
        index.insert("b".into(), 1, 10_500);
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
        let mut index = DedupIndex::new(1_000);
        index.insert("a".into(), 3, 0);
        index.insert("a".into(), 3, 1);
        assert_eq!(index.get("a"), Some(3));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn a_zero_window_is_off() {
        let mut index = DedupIndex::new(0);
        index.insert("a".into(), 0, 0);
        assert_eq!(index.get("a"), None);
        assert!(!index.enabled());
    }
}
