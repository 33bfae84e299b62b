//! Lookups through the sparse index: by time, and with index entries that
//! lie about the records they name.

use crate::store::Files;
use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::*;

#[test]
fn offset_for_timestamp_uses_index_and_scan() {
    let dir = TempDir::new().unwrap();
    let log = TopicLog::open(Files::real(), dir.path(), small(500)).unwrap();
    // Offsets 0..50 with timestamps 100, 100, 110, 110, ... (pairs).
    for i in 0..50 {
        log.append(vec![rec(&format!("m{i}"))], 100 + (i / 2) * 10)
            .unwrap();
    }
    assert!(log.info().segments > 2);
    assert_eq!(log.offset_for_timestamp(i64::MIN).unwrap(), 0);
    assert_eq!(log.offset_for_timestamp(100).unwrap(), 0);
    assert_eq!(log.offset_for_timestamp(101).unwrap(), 2);
    assert_eq!(log.offset_for_timestamp(110).unwrap(), 2);
    assert_eq!(log.offset_for_timestamp(335).unwrap(), 48);
    assert_eq!(log.offset_for_timestamp(340).unwrap(), 48);
    assert_eq!(log.offset_for_timestamp(341).unwrap(), 50);
    for i in 0..25i64 {
        assert_eq!(
            log.offset_for_timestamp(100 + i * 10).unwrap(),
            (i * 2) as u64
        );
        assert_eq!(
            log.offset_for_timestamp(95 + i * 10).unwrap(),
            (i * 2) as u64
        );
    }
}

/// Ten records in one segment, stamped 100, 110, ..., with an index entry every other record.
fn sparse_index_log(dir: &Path) -> (Vec<Record>, PathBuf) {
    let log = TopicLog::open(Files::real(), dir, sparse_config()).unwrap();
    for i in 0..10 {
        log.append(vec![rec(&format!("m{i:04}"))], 100 + i * 10)
            .unwrap();
    }
    let records = read_all(&log);
    let idx = files(dir, "idx").pop().unwrap();
    let entries = crate::store::index::parse_index(&fs::read(&idx).unwrap(), u64::MAX).0;
    assert_eq!(entries.len(), 5, "{entries:?}");
    (records, idx)
}

fn sparse_config() -> LogConfig {
    let record_len = crate::store::record::encoded_len(&rec("m0000")).unwrap() as u64;
    LogConfig {
        index_interval_bytes: record_len * 2,
        ..small(10_000)
    }
}

/// Rewrites index entry `i` (16 bytes: rel offset, position, timestamp).
fn patch_entry(idx: &Path, i: usize, patch: impl FnOnce(&mut u32, &mut u32, &mut i64)) {
    let mut bytes = fs::read(idx).unwrap();
    let at = i * 16;
    let field = |b: &[u8], r: std::ops::Range<usize>| b[at + r.start..at + r.end].to_vec();
    let mut rel = u32::from_le_bytes(field(&bytes, 0..4).try_into().unwrap());
    let mut pos = u32::from_le_bytes(field(&bytes, 4..8).try_into().unwrap());
    let mut ts = i64::from_le_bytes(field(&bytes, 8..16).try_into().unwrap());
    patch(&mut rel, &mut pos, &mut ts);
    bytes[at..at + 4].copy_from_slice(&rel.to_le_bytes());
    bytes[at + 4..at + 8].copy_from_slice(&pos.to_le_bytes());
    bytes[at + 8..at + 16].copy_from_slice(&ts.to_le_bytes());
    fs::write(idx, bytes).unwrap();
}

/// Found by the `log_recovery` fuzz target: index entries whose timestamps were damaged (but
/// still in order) made time lookups start after the record they should have found.
#[test]
fn index_timestamps_that_lie_do_not_skip_records() {
    let answers = |log: &TopicLog| {
        (95..=195)
            .map(|ts| log.offset_for_timestamp(ts).unwrap())
            .collect::<Vec<_>>()
    };
    let want: Vec<u64> = (95..=195)
        .map(|ts: i64| ((ts - 91) / 10).min(10) as u64)
        .collect();

    // A middle entry (record 4, stamped 140) claims 121, just after the entry before it:
    // lookups between 121 and 140 used to start at record 4 and answer 4.
    let dir = TempDir::new().unwrap();
    let (_, idx) = sparse_index_log(dir.path());
    patch_entry(&idx, 2, |_, _, ts| *ts = 121);
    let log = TopicLog::open(Files::real(), dir.path(), sparse_config()).unwrap();
    assert_eq!(log.offset_for_timestamp(130).unwrap(), 3);
    assert_eq!(answers(&log), want);

    // The last entry (record 8): caught when the log is opened, and the index rewritten.
    let dir = TempDir::new().unwrap();
    let (_, idx) = sparse_index_log(dir.path());
    let good = fs::read(&idx).unwrap();
    patch_entry(&idx, 4, |_, _, ts| *ts = 161);
    let log = TopicLog::open(Files::real(), dir.path(), sparse_config()).unwrap();
    assert_eq!(answers(&log), want);
    assert_eq!(fs::read(&idx).unwrap(), good);

    // The first entry: the segment's first timestamp comes from the record, not the index.
    let dir = TempDir::new().unwrap();
    let (_, idx) = sparse_index_log(dir.path());
    patch_entry(&idx, 0, |_, _, ts| *ts = -5);
    let log = TopicLog::open(Files::real(), dir.path(), sparse_config()).unwrap();
    assert_eq!(log.info().oldest_timestamp_ms, Some(100));
    assert_eq!(answers(&log), want);
    assert_eq!(fs::read(&idx).unwrap(), good);
}

/// An index entry pointing into the middle of a record (positions still in order) made every
/// read that started from it fail as corrupt, though the log itself was intact.
#[test]
fn index_positions_that_lie_do_not_fail_reads() {
    for entry in 1..4 {
        let dir = TempDir::new().unwrap();
        let (records, idx) = sparse_index_log(dir.path());
        patch_entry(&idx, entry, |_, pos, _| *pos += 3);
        let log = TopicLog::open(Files::real(), dir.path(), sparse_config()).unwrap();
        for r in &records {
            assert_eq!(&log.read(r.offset, 1, 0).unwrap().records[0], r);
        }
        assert_eq!(read_all(&log), records);
        // Or naming the wrong record.
        let dir = TempDir::new().unwrap();
        let (records, idx) = sparse_index_log(dir.path());
        patch_entry(&idx, entry, |rel, _, _| *rel += 1);
        let log = TopicLog::open(Files::real(), dir.path(), sparse_config()).unwrap();
        for r in &records {
            assert_eq!(&log.read(r.offset, 1, 0).unwrap().records[0], r);
            assert_eq!(log.offset_for_timestamp(r.timestamp_ms).unwrap(), r.offset);
        }
    }
}
