//! Appends and reads: round trips, read limits, segment rolls, and readers
//! running beside the appender.

use crate::store::Files;
use std::sync::Arc;

use tempfile::TempDir;

use super::*;

#[test]
fn log_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<TopicLog>();
}

#[test]
fn append_read_roundtrip() {
    let dir = TempDir::new().unwrap();
    let log = TopicLog::open(Files::real(), dir.path(), LogConfig::default()).unwrap();
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
    let log = TopicLog::open(Files::real(), dir.path(), LogConfig::default()).unwrap();
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
    let log = TopicLog::open(Files::real(), dir.path(), small(200)).unwrap();
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
    let log = TopicLog::open(Files::real(), dir.path(), small(100)).unwrap();
    log.append(vec![rec("a"), rec(&"b".repeat(500)), rec("c")], 1)
        .unwrap();
    assert_eq!(log.info().segments, 3);
    let all = read_all(&log);
    assert_eq!(all[1].payload.len(), 500);
    assert_eq!(all[2].payload, "c".as_bytes());
}

#[test]
fn sync_twice_and_reopen() {
    let dir = TempDir::new().unwrap();
    let topic = dir.path().join("t");
    let log = TopicLog::open(Files::real(), &topic, small(200)).unwrap();
    append_n(&log, 20, 1);
    log.sync().unwrap();
    log.sync().unwrap();
    append_n(&log, 5, 1);
    log.sync().unwrap();
    drop(log);
    let log = TopicLog::open(Files::real(), &topic, small(200)).unwrap();
    assert_eq!(read_all(&log).len(), 25);
}

#[test]
fn concurrent_append_and_read() {
    let dir = TempDir::new().unwrap();
    let log = Arc::new(TopicLog::open(Files::real(), dir.path(), small(4096)).unwrap());
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

#[test]
fn sealed_segments_hold_a_bounded_number_of_open_files() {
    let dir = TempDir::new().unwrap();
    let files = Files::new(crate::disk::real(), 3);
    let log = TopicLog::open(files.clone(), dir.path(), small(200)).unwrap();
    append_n(&log, 60, 1);
    log.sync().unwrap();
    assert!(log.info().segments > 10, "{:?}", log.info());
    assert!(files.open_files() <= 3, "{} open", files.open_files());
    // Every segment reads, in any order, through the closed and reopened files.
    let all = read_all(&log);
    assert_eq!(all.len(), 60);
    for offset in (0..60).rev().step_by(7) {
        let one = log.read(offset, 1, usize::MAX).unwrap();
        assert_eq!(one.records[0], all[offset as usize]);
        assert!(files.open_files() <= 3);
    }
    drop(log);
    let log = TopicLog::open(files.clone(), dir.path(), small(200)).unwrap();
    assert!(
        files.open_files() <= 3,
        "{} open after recovery",
        files.open_files()
    );
    assert_eq!(read_all(&log), all);
    append_n(&log, 5, 2);
    assert_eq!(read_all(&log).len(), 65);
}

#[test]
fn a_retired_log_has_nothing_to_fsync_after_its_directory_moved() {
    let dir = TempDir::new().unwrap();
    let moved_under_it = dir.path().join("a");
    let log = TopicLog::open(Files::real(), &moved_under_it, small(200)).unwrap();
    // Rolls: sealed segments and a directory still to fsync.
    append_n(&log, 30, 1);
    fs::rename(&moved_under_it, dir.path().join(".deleted-a")).unwrap();
    assert!(
        log.sync().is_err(),
        "the files are not where the log left them"
    );

    let retired = dir.path().join("b");
    let log = TopicLog::open(Files::real(), &retired, small(200)).unwrap();
    append_n(&log, 30, 1);
    log.retire(|| fs::rename(&retired, dir.path().join(".deleted-b")))
        .unwrap();
    log.sync().expect("a retired log's fsync does nothing");
    // A rename that fails retires nothing.
    let kept = dir.path().join("c");
    let log = TopicLog::open(Files::real(), &kept, small(200)).unwrap();
    append_n(&log, 30, 1);
    let refused = log.retire(|| fs::rename(dir.path().join("missing"), dir.path().join("x")));
    assert!(refused.is_err());
    log.sync().expect("the log still syncs");
}
