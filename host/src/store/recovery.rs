//! The recovery scan: on open, a segment's records are walked from its last
//! trusted index entry to find where the valid log ends, which index
//! entries are missing, and whether the index tells the truth about the
//! records it names (see "Recovery" in the `store` module docs).

use std::path::Path;

use super::cursor::{Cursor, CursorError};
use super::error::StoreError;
use super::index::IndexEntry;
use crate::disk::DiskFile;

/// Read size while recovering: large enough to amortise syscalls, small enough not to matter.
const SCAN_CHUNK: usize = 1024 * 1024;

/// What a recovery scan found.
pub(super) struct Scan {
    /// First byte not covered by valid records.
    pub end_pos: u64,
    pub end_offset: u64,
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
    /// Index entries for scanned records not covered by the starting entry.
    pub new_entries: Vec<IndexEntry>,
    /// Where and why the scan stopped before the end of the file.
    pub bad: Option<(u64, &'static str)>,
}

/// Validates records from `start` (an index entry, or the segment start) to `len`.
pub(super) fn scan(
    file: &dyn DiskFile,
    path: &Path,
    base: u64,
    start: Option<IndexEntry>,
    len: u64,
    interval: u64,
) -> Result<Scan, StoreError> {
    let (pos, offset) = start.map_or((0, base), |e| {
        (u64::from(e.position), base + u64::from(e.rel_offset))
    });
    let mut last_index_pos = start.map(|e| u64::from(e.position));
    let mut out = Scan {
        end_pos: pos,
        end_offset: offset,
        first_ts: None,
        last_ts: None,
        new_entries: Vec::new(),
        bad: None,
    };
    let mut cursor = Cursor::new(file, path, pos, offset, len, SCAN_CHUNK);
    loop {
        match cursor.next_record() {
            Ok(Some(rec)) => {
                let ts = rec.layout.timestamp_ms;
                let wants_entry = match last_index_pos {
                    None => true,
                    Some(p) => rec.position != p && rec.position - p >= interval,
                };
                if wants_entry {
                    out.new_entries.push(IndexEntry {
                        rel_offset: (rec.layout.offset - base) as u32,
                        position: rec.position as u32,
                        timestamp_ms: ts,
                    });
                    last_index_pos = Some(rec.position);
                }
                out.first_ts.get_or_insert(ts);
                out.last_ts = Some(ts);
                out.end_pos = rec.position + rec.total_len;
                out.end_offset = rec.layout.offset + 1;
            }
            Ok(None) => return Ok(out),
            Err(CursorError::Io(e)) => return Err(e),
            Err(CursorError::Bad { position, reason }) => {
                out.bad = Some((position, reason));
                return Ok(out);
            }
        }
    }
}

/// Whether the first record of the segment has the timestamp the first index entry claims
/// (its position and offset, 0 and the base, are checked when the index is parsed). A first
/// record that does not validate is the log's damage, which reads report, not the index's.
pub(super) fn first_entry_matches(
    file: &dyn DiskFile,
    path: &Path,
    base: u64,
    first: &IndexEntry,
    len: u64,
) -> Result<bool, StoreError> {
    let mut cursor = Cursor::new(file, path, 0, base, len, 0);
    match cursor.next_record() {
        Ok(Some(rec)) => Ok(rec.layout.timestamp_ms == first.timestamp_ms),
        Ok(None) | Err(CursorError::Bad { .. }) => Ok(true),
        Err(CursorError::Io(e)) => Err(e),
    }
}
