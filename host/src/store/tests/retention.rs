//! Retention: whole segments leave from the front by age, size and count.

use crate::store::Files;
use std::path::Path;

use tempfile::TempDir;

use super::*;

/// Segments that hold exactly three of the records `retention_log` writes.
fn three_per_segment() -> LogConfig {
    let size = crate::store::record::encoded_len(&rec(&format!("{:030}", 0))).unwrap() as u64;
    small(size * 3)
}

fn retention_log(dir: &Path, retention: Retention) -> TopicLog {
    let config = LogConfig {
        retention,
        ..three_per_segment()
    };
    let log = TopicLog::open(Files::real(), dir, config).unwrap();
    // Segment k holds offsets 3k..3k+3, all stamped 1000 * k.
    for i in 0..30i64 {
        log.append(vec![rec(&format!("{i:030}"))], (i / 3) * 1000)
            .unwrap();
    }
    log
}

#[test]
fn retention_by_age() {
    let dir = TempDir::new().unwrap();
    let log = retention_log(
        dir.path(),
        Retention {
            max_age_ms: Some(2500),
            ..Retention::default()
        },
    );
    assert_eq!(log.info().segments, 10);
    // Cutoff 7500 - 2500 = 5000: segments whose newest record is older (0..=4) go.
    let outcome = log.apply_retention(7500).unwrap();
    assert_eq!(outcome.segments_removed, 5);
    assert_eq!(outcome.messages_removed, 15);
    assert_eq!(log.start_offset(), 15);
    assert_eq!(log.next_offset(), 30);
    assert_eq!(files(dir.path(), "log").len(), 5);
    assert_eq!(files(dir.path(), "idx").len(), 5);
    // The active segment survives any age.
    let outcome = log.apply_retention(i64::MAX).unwrap();
    assert_eq!(outcome.segments_removed, 4);
    assert_eq!(log.info().segments, 1);
    assert_eq!(log.start_offset(), 27);

    let below = log.read(0, 100, usize::MAX).unwrap();
    assert_eq!(below.records.first().map(|r| r.offset), Some(27));
    assert_eq!(below.next_offset, 30);
    assert_eq!(log.append(vec![rec("next")], 0).unwrap()[0].offset, 30);
    drop(log);
    let log = TopicLog::open(Files::real(), dir.path(), three_per_segment()).unwrap();
    assert_eq!((log.start_offset(), log.next_offset()), (27, 31));
}

#[test]
fn retention_by_bytes() {
    let dir = TempDir::new().unwrap();
    let log = retention_log(dir.path(), Retention::default());
    let seg_bytes = log.info().bytes / 10;
    drop(log);
    let config = LogConfig {
        retention: Retention {
            max_bytes: Some(seg_bytes * 4 - 1),
            ..Retention::default()
        },
        ..three_per_segment()
    };
    let log = TopicLog::open(Files::real(), dir.path(), config).unwrap();
    let outcome = log.apply_retention(0).unwrap();
    // Kafka semantics: keep at least max_bytes, so 4 segments remain.
    assert_eq!(outcome.segments_removed, 6);
    assert_eq!(outcome.bytes_removed, seg_bytes * 6);
    assert_eq!(log.info().segments, 4);
    assert_eq!(log.info().bytes, seg_bytes * 4);
    assert_eq!(log.read(0, 1, 1).unwrap().records[0].offset, 18);
    assert_eq!(log.apply_retention(0).unwrap(), RetentionOutcome::default());
}

#[test]
fn retention_by_messages() {
    let dir = TempDir::new().unwrap();
    let log = retention_log(
        dir.path(),
        Retention {
            max_messages: Some(10),
            ..Retention::default()
        },
    );
    let outcome = log.apply_retention(0).unwrap();
    assert_eq!(outcome.segments_removed, 6);
    assert_eq!(outcome.messages_removed, 18);
    assert_eq!(log.start_offset(), 18);
    let info = log.info();
    assert_eq!(info.next_offset - info.start_offset, 12);
    assert_eq!(info.oldest_timestamp_ms, Some(6000));
    assert_eq!(read_all(&log).len(), 12);
}
