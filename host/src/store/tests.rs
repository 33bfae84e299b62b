//! Tests of `TopicLog` against real files in temporary directories.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tempfile::TempDir;

use super::*;

fn rec(payload: &str) -> NewRecord {
    NewRecord {
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        ..NewRecord::default()
    }
}

fn small(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 64,
        retention: Retention::default(),
    }
}

fn append_n(log: &TopicLog, n: usize, ts: i64) {
    for i in 0..n {
        log.append(vec![rec(&format!("m{i:04}"))], ts).unwrap();
    }
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}

fn read_all(log: &TopicLog) -> Vec<Record> {
    log.read(0, usize::MAX, usize::MAX).unwrap().records
}

#[test]
fn log_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<TopicLog>();
}

#[test]
fn append_read_roundtrip() {
    let dir = TempDir::new().unwrap();
    let log = TopicLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!((log.start_offset(), log.next_offset()), (0, 0));
    let batch = vec![
        NewRecord {
            key: Some(Bytes::from_static(b"key")),
            headers: vec![("h1".into(), "v1".into()), ("h2".into(), "".into())],
            payload: Bytes::from_static(b"payload"),
            id: Some("msg-1".into()),
        },
        NewRecord::default(),
        NewRecord {
            key: Some(Bytes::new()),
            id: Some(String::new()),
            ..rec("x")
        },
    ];
    let appended = log.append(batch.clone(), 1000).unwrap();
    assert_eq!(
        appended.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert!(appended.iter().all(|r| r.timestamp_ms == 1000));

    let read = log.read(0, 10, 1 << 20).unwrap();
    assert_eq!(read.next_offset, 3);
    assert_eq!(read.records, appended);
    for (got, sent) in read.records.iter().zip(&batch) {
        assert_eq!(got.key, sent.key);
        assert_eq!(got.headers, sent.headers);
        assert_eq!(got.payload, sent.payload);
        assert_eq!(got.id, sent.id);
    }
    // Timestamps never go backwards even if the clock does.
    let later = log.append(vec![rec("late")], 500).unwrap();
    assert_eq!((later[0].offset, later[0].timestamp_ms), (3, 1000));

    let empty = log.read(4, 10, 100).unwrap();
    assert!(empty.records.is_empty());
    assert_eq!(empty.next_offset, 4);
    let past = log.read(99, 10, 100).unwrap();
    assert_eq!((past.records.len(), past.next_offset), (0, 99));
    assert!(log.append(Vec::new(), 0).unwrap().is_empty());
    log.sync().unwrap();
}

#[test]
fn read_limits_return_at_least_one_record() {
    let dir = TempDir::new().unwrap();
    let log = TopicLog::open(dir.path(), LogConfig::default()).unwrap();
    log.append((0..10).map(|i| rec(&"x".repeat(100 + i))).collect(), 1)
        .unwrap();
    let one = log.read(0, 10, 1).unwrap();
    assert_eq!((one.records.len(), one.next_offset), (1, 1));
    let two = log.read(1, 10, 250).unwrap();
    assert_eq!((two.records.len(), two.next_offset), (2, 3));
    let three = log.read(3, 3, usize::MAX).unwrap();
    assert_eq!(
        three.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [3, 4, 5]
    );
}

#[test]
fn reads_across_segment_rolls() {
    let dir = TempDir::new().unwrap();
    let log = TopicLog::open(dir.path(), small(200)).unwrap();
    append_n(&log, 30, 7);
    // A batch that spans several segments is written segment by segment.
    log.append((30..60).map(|i| rec(&format!("m{i:04}"))).collect(), 8)
        .unwrap();
    let info = log.info();
    assert!(info.segments > 5, "{info:?}");
    assert_eq!(files(dir.path(), "log").len(), info.segments);
    assert_eq!(files(dir.path(), "idx").len(), info.segments);
    assert_eq!(info.next_offset, 60);
    assert_eq!(info.oldest_timestamp_ms, Some(7));
    assert_eq!(info.newest_timestamp_ms, Some(8));

    let all = read_all(&log);
    assert_eq!(all.len(), 60);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
        assert_eq!(r.payload, format!("m{i:04}").as_bytes());
    }
    // Paging through one record at a time from every offset.
    for from in 0..60 {
        let b = log.read(from, 1, usize::MAX).unwrap();
        assert_eq!(b.records[0].offset, from);
        assert_eq!(b.next_offset, from + 1);
    }
    let mut from = 0;
    let mut seen = 0;
    while from < 60 {
        let b = log.read(from, 7, usize::MAX).unwrap();
        seen += b.records.len();
        from = b.next_offset;
    }
    assert_eq!(seen, 60);
}

#[test]
fn oversized_record_gets_its_own_segment() {
    let dir = TempDir::new().unwrap();
    let log = TopicLog::open(dir.path(), small(100)).unwrap();
    log.append(vec![rec("a"), rec(&"b".repeat(500)), rec("c")], 1)
        .unwrap();
    assert_eq!(log.info().segments, 3);
    let all = read_all(&log);
    assert_eq!(all[1].payload.len(), 500);
    assert_eq!(all[2].payload, "c".as_bytes());
}

#[test]
fn reopen_after_clean_close() {
    let dir = TempDir::new().unwrap();
    let before = {
        let log = TopicLog::open(dir.path(), small(300)).unwrap();
        append_n(&log, 25, 42);
        log.sync().unwrap();
        read_all(&log)
    };
    let log = TopicLog::open(dir.path(), small(300)).unwrap();
    assert_eq!(log.next_offset(), 25);
    assert_eq!(read_all(&log), before);
    let more = log.append(vec![rec("after")], 10).unwrap();
    assert_eq!((more[0].offset, more[0].timestamp_ms), (25, 42));
    drop(log);
    let log = TopicLog::open(dir.path(), small(300)).unwrap();
    assert_eq!(read_all(&log).len(), 26);
}

#[test]
fn empty_directory_and_stray_files() {
    let dir = TempDir::new().unwrap();
    let topic = dir.path().join("nested").join("topic");
    let log = TopicLog::open(&topic, LogConfig::default()).unwrap();
    assert_eq!(log.info().segments, 1);
    drop(log);
    fs::write(topic.join("notes.txt"), b"ignored").unwrap();
    assert!(TopicLog::open(&topic, LogConfig::default()).is_ok());
    fs::write(topic.join("12.log"), b"").unwrap();
    match TopicLog::open(&topic, LogConfig::default()) {
        Err(StoreError::BadSegmentName { path }) => assert!(path.ends_with("12.log")),
        other => panic!("expected a bad name error, got {other:?}"),
    }
}

fn last_log(dir: &Path) -> PathBuf {
    files(dir, "log").pop().unwrap()
}

#[test]
fn recovery_truncates_torn_tail() {
    let dir = TempDir::new().unwrap();
    {
        let log = TopicLog::open(dir.path(), small(10_000)).unwrap();
        append_n(&log, 10, 1);
    }
    let path = last_log(dir.path());
    let len = fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 3)
        .unwrap();

    let log = TopicLog::open(dir.path(), small(10_000)).unwrap();
    assert_eq!(log.next_offset(), 9);
    assert_eq!(read_all(&log).len(), 9);
    let appended = log.append(vec![rec("new")], 2).unwrap();
    assert_eq!(appended[0].offset, 9);
    let all = read_all(&log);
    assert_eq!(all.len(), 10);
    assert_eq!(all[9].payload, "new".as_bytes());
    drop(log);
    assert_eq!(
        read_all(&TopicLog::open(dir.path(), small(10_000)).unwrap()).len(),
        10
    );
}

#[test]
fn recovery_truncates_at_bad_crc() {
    let dir = TempDir::new().unwrap();
    // One index entry for the whole segment, so recovery scans all of it.
    let config = LogConfig::default();
    {
        let log = TopicLog::open(dir.path(), config).unwrap();
        append_n(&log, 10, 1);
    }
    let path = last_log(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let record_len = bytes.len() / 10;
    // Flip a payload byte of record 6.
    bytes[record_len * 7 - 2] ^= 0x40;
    fs::write(&path, &bytes).unwrap();

    let log = TopicLog::open(dir.path(), config).unwrap();
    assert_eq!(log.next_offset(), 6);
    assert_eq!(fs::metadata(&path).unwrap().len(), (record_len * 6) as u64);
    let appended = log.append(vec![rec("x"), rec("y")], 2).unwrap();
    assert_eq!(
        appended.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [6, 7]
    );
    let all = read_all(&log);
    assert_eq!(all.len(), 8);
    assert_eq!(all[5].payload, "m0005".as_bytes());
    assert_eq!(all[7].payload, "y".as_bytes());
}

#[test]
fn recovery_truncates_bad_crc_after_last_index_entry() {
    let dir = TempDir::new().unwrap();
    {
        let log = TopicLog::open(dir.path(), small(10_000)).unwrap();
        append_n(&log, 10, 1);
    }
    let path = last_log(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&path, &bytes).unwrap();

    let log = TopicLog::open(dir.path(), small(10_000)).unwrap();
    assert_eq!(log.next_offset(), 9);
    assert_eq!(log.append(vec![rec("x")], 2).unwrap()[0].offset, 9);
    assert_eq!(read_all(&log).len(), 10);
}

#[test]
fn recovery_of_garbage_tail_and_index_past_end() {
    let dir = TempDir::new().unwrap();
    let config = LogConfig {
        index_interval_bytes: 0,
        ..small(10_000)
    };
    {
        let log = TopicLog::open(dir.path(), config).unwrap();
        append_n(&log, 10, 1);
    }
    let path = last_log(dir.path());
    let len = fs::metadata(&path).unwrap().len();
    // Index has an entry per record; cutting the log in half leaves entries past the end.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut f, &[0xAB; 37]).unwrap();
    drop(f);

    let log = TopicLog::open(dir.path(), config).unwrap();
    assert_eq!(log.next_offset(), 5);
    log.append(vec![rec("z")], 1).unwrap();
    let all = read_all(&log);
    assert_eq!(all.len(), 6);
    assert_eq!(log.offset_for_timestamp(1).unwrap(), 0);
    for from in 0..6 {
        assert_eq!(log.read(from, 1, 1).unwrap().records[0].offset, from);
    }
}

#[test]
fn sealed_index_missing_or_garbage_is_rebuilt() {
    let dir = TempDir::new().unwrap();
    let before = {
        let log = TopicLog::open(dir.path(), small(400)).unwrap();
        append_n(&log, 40, 3);
        read_all(&log)
    };
    let idx = files(dir.path(), "idx");
    assert!(idx.len() >= 3);
    let good_first = fs::read(&idx[0]).unwrap();
    fs::remove_file(&idx[0]).unwrap();
    fs::write(&idx[1], b"definitely not an index").unwrap();
    let mut reversed = fs::read(&idx[2]).unwrap();
    assert!(reversed.len() >= 32, "need two entries");
    reversed.rotate_left(16);
    fs::write(&idx[2], &reversed).unwrap();

    let log = TopicLog::open(dir.path(), small(400)).unwrap();
    assert_eq!(read_all(&log), before);
    for from in 0..40 {
        assert_eq!(
            log.read(from, 1, 1).unwrap().records[0],
            before[from as usize]
        );
    }
    assert_eq!(fs::read(&idx[0]).unwrap(), good_first);
    assert_eq!(fs::metadata(&idx[1]).unwrap().len() % 16, 0);
}

#[test]
fn offset_for_timestamp_uses_index_and_scan() {
    let dir = TempDir::new().unwrap();
    let log = TopicLog::open(dir.path(), small(500)).unwrap();
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

/// Segments that hold exactly three of the records `retention_log` writes.
fn three_per_segment() -> LogConfig {
    let size = super::record::encoded_len(&rec(&format!("{:030}", 0))).unwrap() as u64;
    small(size * 3)
}

fn retention_log(dir: &Path, retention: Retention) -> TopicLog {
    let config = LogConfig {
        retention,
        ..three_per_segment()
    };
    let log = TopicLog::open(dir, config).unwrap();
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
    let log = TopicLog::open(dir.path(), three_per_segment()).unwrap();
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
    let log = TopicLog::open(dir.path(), config).unwrap();
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

#[test]
fn corrupt_sealed_record_is_a_read_error() {
    let dir = TempDir::new().unwrap();
    let log = TopicLog::open(dir.path(), small(200)).unwrap();
    append_n(&log, 20, 1);
    let first = &files(dir.path(), "log")[0];
    let mut bytes = fs::read(first).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(first, &bytes).unwrap();

    match log.read(0, 100, usize::MAX) {
        Err(StoreError::Corrupt { path, position, .. }) => {
            assert_eq!(&path, first);
            assert!(position > 0);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    drop(log);
    // A reopened log still starts and still reports the damage.
    let log = TopicLog::open(dir.path(), small(200)).unwrap();
    assert_eq!(log.next_offset(), 20);
    assert!(matches!(
        log.read(0, 100, usize::MAX),
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(log.read(5, 100, usize::MAX).unwrap().records[0].offset, 5);
}

#[test]
fn sync_and_delete() {
    let dir = TempDir::new().unwrap();
    let topic = dir.path().join("t");
    let log = TopicLog::open(&topic, small(200)).unwrap();
    append_n(&log, 20, 1);
    log.sync().unwrap();
    log.sync().unwrap();
    append_n(&log, 5, 1);
    log.delete().unwrap();
    assert!(!topic.exists());
}

#[test]
fn concurrent_append_and_read() {
    let dir = TempDir::new().unwrap();
    let log = Arc::new(TopicLog::open(dir.path(), small(4096)).unwrap());
    const TOTAL: u64 = 3000;
    let writer = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut i = 0;
            while i < TOTAL {
                let batch = (i..(i + 7).min(TOTAL))
                    .map(|n| rec(&n.to_string()))
                    .collect::<Vec<_>>();
                i += batch.len() as u64;
                log.append(batch, 1).unwrap();
                if i % 700 == 0 {
                    log.sync().unwrap();
                }
            }
        })
    };
    let syncer = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            while log.next_offset() < TOTAL {
                log.sync().unwrap();
                std::thread::yield_now();
            }
        })
    };
    let mut from = 0;
    while from < TOTAL {
        let batch = log.read(from, 50, 1 << 20).unwrap();
        for r in &batch.records {
            assert_eq!(r.offset, from);
            assert_eq!(r.payload, from.to_string().as_bytes());
            from += 1;
        }
        assert_eq!(batch.next_offset, from);
    }
    writer.join().unwrap();
    syncer.join().unwrap();
    assert_eq!(log.next_offset(), TOTAL);
}

/// Ten records in one segment, stamped 100, 110, ..., with an index entry every other record.
fn sparse_index_log(dir: &Path) -> (Vec<Record>, PathBuf) {
    let log = TopicLog::open(dir, sparse_config()).unwrap();
    for i in 0..10 {
        log.append(vec![rec(&format!("m{i:04}"))], 100 + i * 10)
            .unwrap();
    }
    let records = read_all(&log);
    let idx = files(dir, "idx").pop().unwrap();
    let entries = super::index::parse_index(&fs::read(&idx).unwrap(), u64::MAX).0;
    assert_eq!(entries.len(), 5, "{entries:?}");
    (records, idx)
}

fn sparse_config() -> LogConfig {
    let record_len = super::record::encoded_len(&rec("m0000")).unwrap() as u64;
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
    let log = TopicLog::open(dir.path(), sparse_config()).unwrap();
    assert_eq!(log.offset_for_timestamp(130).unwrap(), 3);
    assert_eq!(answers(&log), want);

    // The last entry (record 8): caught when the log is opened, and the index rewritten.
    let dir = TempDir::new().unwrap();
    let (_, idx) = sparse_index_log(dir.path());
    let good = fs::read(&idx).unwrap();
    patch_entry(&idx, 4, |_, _, ts| *ts = 161);
    let log = TopicLog::open(dir.path(), sparse_config()).unwrap();
    assert_eq!(answers(&log), want);
    assert_eq!(fs::read(&idx).unwrap(), good);

    // The first entry: the segment's first timestamp comes from the record, not the index.
    let dir = TempDir::new().unwrap();
    let (_, idx) = sparse_index_log(dir.path());
    patch_entry(&idx, 0, |_, _, ts| *ts = -5);
    let log = TopicLog::open(dir.path(), sparse_config()).unwrap();
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
        let log = TopicLog::open(dir.path(), sparse_config()).unwrap();
        for r in &records {
            assert_eq!(&log.read(r.offset, 1, 0).unwrap().records[0], r);
        }
        assert_eq!(read_all(&log), records);
        // Or naming the wrong record.
        let dir = TempDir::new().unwrap();
        let (records, idx) = sparse_index_log(dir.path());
        patch_entry(&idx, entry, |rel, _, _| *rel += 1);
        let log = TopicLog::open(dir.path(), sparse_config()).unwrap();
        for r in &records {
            assert_eq!(&log.read(r.offset, 1, 0).unwrap().records[0], r);
            assert_eq!(log.offset_for_timestamp(r.timestamp_ms).unwrap(), r.offset);
        }
    }
}
