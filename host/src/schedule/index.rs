//! [`Index`]: what waits in the schedule, by due time, without the
//! messages themselves.
//!
//! An entry is 24 bytes: its due time, its offset in the schedule log
//! (`seq`, which also orders entries due at the same millisecond in
//! publish order) and its topic as a number. Payloads stay in the log and
//! are read back when due, so a million waiting messages cost about 24 MB
//! here, whatever their size.
//!
//! Fired entries are recorded by checkpoints `(due, seq, end)`: every entry
//! below offset `end` whose `(due, seq)` is at most the checkpoint's fired.
//! That holds because the firer pops entries in `(due, seq)` order from an
//! index holding every entry below `end`: an entry published late, due
//! before what already fired, is above `end` or fires in the next batch.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

/// One waiting message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    /// When it is due (ms since the Unix epoch).
    pub due_ms: i64,
    /// Its offset in the schedule log.
    pub seq: u64,
    /// Its topic, as numbered by the index.
    pub topic: u32,
}

/// What fired: entries below `end` up to `(due_ms, seq)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// The last fired entry's due time.
    pub due_ms: i64,
    /// The last fired entry's offset in the log.
    pub seq: u64,
    /// The log offset below which every entry was in the index.
    pub end: u64,
}

impl Checkpoint {
    /// The checkpoint's text form, kept in the log.
    pub fn encode(&self) -> String {
        format!("{} {} {}", self.due_ms, self.seq, self.end)
    }

    /// Reads [`Checkpoint::encode`]'s form.
    pub fn decode(text: &str) -> Option<Checkpoint> {
        let mut parts = text.split(' ');
        let checkpoint = Checkpoint {
            due_ms: parts.next()?.parse().ok()?,
            seq: parts.next()?.parse().ok()?,
            end: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(checkpoint)
    }

    fn covers(&self, entry: &Entry) -> bool {
        entry.seq < self.end && (entry.due_ms, entry.seq) <= (self.due_ms, self.seq)
    }
}

/// The waiting entries, earliest first, and how many wait per topic.
#[derive(Debug, Default)]
pub(crate) struct Index {
    heap: BinaryHeap<Reverse<Entry>>,
    topics: Vec<Arc<str>>,
    numbers: HashMap<Arc<str>, u32>,
    waiting: Vec<u64>,
    /// The latest checkpoint applied.
    fired: Option<Checkpoint>,
    /// The log offset of the latest checkpoint applied.
    fired_at: Option<u64>,
}

impl Index {
    /// Adds an entry read from the log, unless the latest checkpoint says
    /// it fired already.
    pub fn insert(&mut self, due_ms: i64, seq: u64, topic: &str) {
        let number = self.number(topic);
        let entry = Entry {
            due_ms,
            seq,
            topic: number,
        };
        if self.fired.is_some_and(|c| c.covers(&entry)) {
            return;
        }
        self.waiting[number as usize] += 1;
        self.heap.push(Reverse(entry));
    }

    /// Removes what `checkpoint`, read at log offset `at`, says fired (on
    /// another node, or before a restart).
    pub fn apply(&mut self, checkpoint: Checkpoint, at: u64) {
        self.fired_at = Some(self.fired_at.map_or(at, |seen| seen.max(at)));
        let mut kept = Vec::new();
        while let Some(Reverse(entry)) = self.heap.peek().copied() {
            if (entry.due_ms, entry.seq) > (checkpoint.due_ms, checkpoint.seq) {
                break;
            }
            self.heap.pop();
            if checkpoint.covers(&entry) {
                self.waiting[entry.topic as usize] -= 1;
            } else {
                kept.push(Reverse(entry));
            }
        }
        self.heap.extend(kept);
        if self.fired.is_none_or(|c| {
            (c.due_ms, c.seq, c.end) < (checkpoint.due_ms, checkpoint.seq, checkpoint.end)
        }) {
            self.fired = Some(checkpoint);
        }
    }

    /// The earliest due time waiting.
    pub fn next_due(&self) -> Option<i64> {
        self.heap.peek().map(|Reverse(e)| e.due_ms)
    }

    /// Takes up to `max` entries due at or before `now_ms`, earliest first.
    pub fn take_due(&mut self, now_ms: i64, max: usize) -> Vec<Entry> {
        let mut due = Vec::new();
        while due.len() < max {
            match self.heap.peek() {
                Some(Reverse(e)) if e.due_ms <= now_ms => {
                    let entry = e.to_owned();
                    self.heap.pop();
                    self.waiting[entry.topic as usize] -= 1;
                    due.push(entry);
                }
                _ => break,
            }
        }
        due
    }

    /// Puts back entries taken but not fired (their append failed).
    pub fn put_back(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            self.waiting[entry.topic as usize] += 1;
            self.heap.push(Reverse(entry));
        }
    }

    /// The topic an entry's number stands for.
    pub fn topic(&self, entry: &Entry) -> &Arc<str> {
        &self.topics[entry.topic as usize]
    }

    /// How many wait for `topic`.
    pub fn waiting(&self, topic: &str) -> u64 {
        self.numbers
            .get(topic)
            .map_or(0, |n| self.waiting[*n as usize])
    }

    /// How many wait in all.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// The log offset below which nothing is needed any more: no entry
    /// waits there, and the latest checkpoint is at or after it (so the
    /// log read from there says the same). `None` before any checkpoint.
    pub fn trim_point(&self) -> Option<u64> {
        let fired_at = self.fired_at?;
        let waiting = self.heap.iter().map(|Reverse(e)| e.seq).min();
        Some(waiting.map_or(fired_at, |seq| seq.min(fired_at)))
    }

    fn number(&mut self, topic: &str) -> u32 {
        if let Some(n) = self.numbers.get(topic) {
            return *n;
        }
        let name: Arc<str> = Arc::from(topic);
        let n = self.topics.len() as u32;
        self.topics.push(name.clone());
        self.numbers.insert(name, n);
        self.waiting.push(0);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(index: &mut Index, now: i64) -> Vec<(i64, u64)> {
        index
            .take_due(now, usize::MAX)
            .into_iter()
            .map(|e| (e.due_ms, e.seq))
            .collect()
    }

    #[test]
    fn entries_come_out_in_due_order_then_publish_order() {
        let mut index = Index::default();
        index.insert(30, 0, "a");
        index.insert(10, 1, "b");
        index.insert(10, 2, "a");
        index.insert(20, 3, "a");
        assert_eq!(index.waiting("a"), 3);
        assert_eq!(index.next_due(), Some(10));
        assert_eq!(due(&mut index, 9), vec![]);
        assert_eq!(due(&mut index, 20), vec![(10, 1), (10, 2), (20, 3)]);
        assert_eq!((index.waiting("a"), index.waiting("b")), (1, 0));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn a_checkpoint_removes_what_fired_and_keeps_late_entries() {
        let mut index = Index::default();
        index.insert(10, 0, "a");
        index.insert(20, 1, "a");
        index.insert(40, 2, "a");
        // Published late (offset 3, past the checkpoint's end), due before
        // what fired: it did not fire.
        index.insert(15, 3, "a");
        index.apply(
            Checkpoint {
                due_ms: 20,
                seq: 1,
                end: 3,
            },
            4,
        );
        assert_eq!(index.waiting("a"), 2);
        // The oldest still waiting is at offset 2.
        assert_eq!(index.trim_point(), Some(2));
        assert_eq!(due(&mut index, 100), vec![(15, 3), (40, 2)]);
        // Nothing waits: everything before the checkpoint can go.
        assert_eq!(index.trim_point(), Some(4));
    }

    #[test]
    fn entries_read_after_a_checkpoint_that_covers_them_are_dropped() {
        let mut index = Index::default();
        index.apply(
            Checkpoint {
                due_ms: 50,
                seq: 7,
                end: 8,
            },
            9,
        );
        index.insert(10, 2, "a");
        index.insert(60, 3, "a");
        index.insert(10, 9, "a");
        assert_eq!(due(&mut index, 100), vec![(10, 9), (60, 3)]);
    }

    #[test]
    fn entries_put_back_are_waiting_again() {
        let mut index = Index::default();
        index.insert(10, 0, "a");
        let taken = index.take_due(10, 5);
        assert_eq!(index.waiting("a"), 0);
        index.put_back(taken);
        assert_eq!(index.waiting("a"), 1);
        let again = index.take_due(10, 1);
        assert_eq!(index.topic(&again[0]).as_ref(), "a");
    }

    #[test]
    fn checkpoints_round_trip_as_text() {
        let c = Checkpoint {
            due_ms: -5,
            seq: 1,
            end: 2,
        };
        assert_eq!(Checkpoint::decode(&c.encode()), Some(c));
        assert_eq!(Checkpoint::decode("1 2"), None);
        assert_eq!(Checkpoint::decode("1 2 3 4"), None);
    }
}
