//! The sparse offset/time index kept next to each segment (`<base>.idx`).
//!
//! Entries are 16 bytes: `u32 LE relative offset | u32 LE file position | i64 LE timestamp_ms`.
//! Offsets, positions and timestamps only grow, so both lookups are binary searches.

use std::sync::{PoisonError, RwLock};

/// Size of one on-disk index entry.
pub(crate) const ENTRY_LEN: usize = 16;

/// One index entry: the record at `position` has offset `base + rel_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub rel_offset: u32,
    pub position: u32,
    pub timestamp_ms: i64,
}

impl IndexEntry {
    /// Appends the 16-byte encoding to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.rel_offset.to_le_bytes());
        out.extend_from_slice(&self.position.to_le_bytes());
        out.extend_from_slice(&self.timestamp_ms.to_le_bytes());
    }

    fn decode(bytes: &[u8; ENTRY_LEN]) -> Self {
        let [a0, a1, a2, a3, b0, b1, b2, b3, t @ ..] = *bytes;
        IndexEntry {
            rel_offset: u32::from_le_bytes([a0, a1, a2, a3]),
            position: u32::from_le_bytes([b0, b1, b2, b3]),
            timestamp_ms: i64::from_le_bytes(t),
        }
    }

    /// Whether `self` may directly follow `prev` in an index.
    fn follows(&self, prev: &IndexEntry) -> bool {
        self.rel_offset > prev.rel_offset
            && self.position > prev.position
            && self.timestamp_ms >= prev.timestamp_ms
    }
}

/// Parses an index file against a segment of `log_len` bytes.
///
/// Returns the longest consistent prefix (first entry at offset 0 / position 0, everything
/// increasing, every position inside the log) and whether that prefix is the whole file.
pub(crate) fn parse_index(bytes: &[u8], log_len: u64) -> (Vec<IndexEntry>, bool) {
    let mut entries: Vec<IndexEntry> = Vec::with_capacity(bytes.len() / ENTRY_LEN);
    let mut chunks = bytes.chunks_exact(ENTRY_LEN);
    for chunk in chunks.by_ref() {
        let Ok(raw) = <&[u8; ENTRY_LEN]>::try_from(chunk) else {
            return (entries, false);
        };
        let entry = IndexEntry::decode(raw);
        let ok = match entries.last() {
            None => entry.rel_offset == 0 && entry.position == 0,
            Some(prev) => entry.follows(prev),
        };
        if !ok || u64::from(entry.position) >= log_len {
            return (entries, false);
        }
        entries.push(entry);
    }
    let whole = chunks.remainder().is_empty();
    (entries, whole)
}

/// Encodes a whole index, for rewriting an index file.
pub(crate) fn encode_all(entries: &[IndexEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY_LEN);
    for entry in entries {
        entry.encode_into(&mut out);
    }
    out
}

/// The in-memory copy of a segment's index, shared between the appender and readers.
#[derive(Debug, Default)]
pub(crate) struct SparseIndex {
    entries: RwLock<Vec<IndexEntry>>,
}

impl SparseIndex {
    /// Wraps already validated entries.
    pub(crate) fn new(entries: Vec<IndexEntry>) -> Self {
        SparseIndex {
            entries: RwLock::new(entries),
        }
    }

    /// The last entry at or before relative offset `rel`.
    pub(crate) fn floor_offset(&self, rel: u64) -> Option<IndexEntry> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let n = entries.partition_point(|e| u64::from(e.rel_offset) <= rel);
        n.checked_sub(1).map(|i| entries[i])
    }

    /// The last entry whose timestamp is strictly below `ts_ms`: the first record at or after
    /// `ts_ms` lies after it. `None` if the first entry already qualifies (or there is none).
    pub(crate) fn last_before_time(&self, ts_ms: i64) -> Option<IndexEntry> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let n = entries.partition_point(|e| e.timestamp_ms < ts_ms);
        n.checked_sub(1).map(|i| entries[i])
    }

    /// Drops `entry`, found not to match the record it names (a damaged index file), so that
    /// lookups fall back to the entries before it. False if it was not there (any more).
    pub(crate) fn remove(&self, entry: &IndexEntry) -> bool {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        match entries.binary_search_by_key(&entry.position, |e| e.position) {
            Ok(i) if entries[i] == *entry => {
                entries.remove(i);
                true
            }
            _ => false,
        }
    }

    /// Adds an entry where it belongs by position (one found past damage).
    pub(crate) fn insert(&self, entry: IndexEntry) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if let Err(i) = entries.binary_search_by_key(&entry.position, |e| e.position) {
            entries.insert(i, entry);
        }
    }

    /// Adds entries for newly appended records.
    pub(crate) fn extend(&self, new: &[IndexEntry]) {
        if new.is_empty() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        entries.extend_from_slice(new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(rel: u32, pos: u32, ts: i64) -> IndexEntry {
        IndexEntry {
            rel_offset: rel,
            position: pos,
            timestamp_ms: ts,
        }
    }

    #[test]
    fn parse_accepts_consistent_and_cuts_at_first_bad_entry() {
        let good = [entry(0, 0, 5), entry(10, 4096, 5), entry(20, 8200, 9)];
        let bytes = encode_all(&good);
        assert_eq!(parse_index(&bytes, 10_000), (good.to_vec(), true));
        // Pointing past the end of the log.
        assert_eq!(parse_index(&bytes, 8200), (good[..2].to_vec(), false));
        // Torn last entry.
        assert_eq!(
            parse_index(&bytes[..bytes.len() - 3], 10_000),
            (good[..2].to_vec(), false)
        );
        // Out of order.
        let bad = encode_all(&[entry(0, 0, 5), entry(10, 4096, 4)]);
        assert_eq!(parse_index(&bad, 10_000), (vec![entry(0, 0, 5)], false));
        // Must start at the first record.
        let bad = encode_all(&[entry(1, 0, 5)]);
        assert_eq!(parse_index(&bad, 10_000), (vec![], false));
    }

    #[test]
    fn lookups() {
        let idx = SparseIndex::new(vec![entry(0, 0, 5), entry(10, 100, 7), entry(20, 200, 7)]);
        assert_eq!(idx.floor_offset(0), Some(entry(0, 0, 5)));
        assert_eq!(idx.floor_offset(15), Some(entry(10, 100, 7)));
        assert_eq!(idx.floor_offset(99), Some(entry(20, 200, 7)));
        assert_eq!(idx.last_before_time(5), None);
        assert_eq!(idx.last_before_time(7), Some(entry(0, 0, 5)));
        assert_eq!(idx.last_before_time(8), Some(entry(20, 200, 7)));
        assert_eq!(SparseIndex::default().floor_offset(3), None);
        // A distrusted entry is skipped from then on.
        assert!(idx.remove(&entry(10, 100, 7)));
        assert!(!idx.remove(&entry(10, 100, 7)));
        assert!(!idx.remove(&entry(20, 200, 8)));
        assert_eq!(idx.floor_offset(15), Some(entry(0, 0, 5)));
        assert_eq!(idx.last_before_time(8), Some(entry(20, 200, 7)));
    }
}
