//! Opening a log again: after a clean close, with stray files, with a torn
//! or corrupt tail, with a damaged index, and with a damaged sealed segment.

use crate::store::Files;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::*;

#[test]
fn reopen_after_clean_close() {
    let dir = TempDir::new().unwrap();
    let before = {
        let log = TopicLog::open(Files::real(), dir.path(), small(300)).unwrap();
        append_n(&log, 25, 42);
        log.sync().unwrap();
        read_all(&log)
    };
    let log = TopicLog::open(Files::real(), dir.path(), small(300)).unwrap();
    assert_eq!(log.next_offset(), 25);
    assert_eq!(read_all(&log), before);
    let more = log.append(vec![rec("after")], 10).unwrap();
    assert_eq!((more[0].offset, more[0].timestamp_ms), (25, 42));
    drop(log);
    let log = TopicLog::open(Files::real(), dir.path(), small(300)).unwrap();
    assert_eq!(read_all(&log).len(), 26);
}

#[test]
fn empty_directory_and_stray_files() {
    let dir = TempDir::new().unwrap();
    let topic = dir.path().join("nested").join("topic");
    let log = TopicLog::open(Files::real(), &topic, LogConfig::default()).unwrap();
    assert_eq!(log.info().segments, 1);
    drop(log);
    fs::write(topic.join("notes.txt"), b"ignored").unwrap();
    assert!(TopicLog::open(Files::real(), &topic, LogConfig::default()).is_ok());
    fs::write(topic.join("12.log"), b"").unwrap();
    match TopicLog::open(Files::real(), &topic, LogConfig::default()) {
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
        let log = TopicLog::open(Files::real(), dir.path(), small(10_000)).unwrap();
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

    let log = TopicLog::open(Files::real(), dir.path(), small(10_000)).unwrap();
    assert_eq!(log.next_offset(), 9);
    assert_eq!(read_all(&log).len(), 9);
    let appended = log.append(vec![rec("new")], 2).unwrap();
    assert_eq!(appended[0].offset, 9);
    let all = read_all(&log);
    assert_eq!(all.len(), 10);
    assert_eq!(all[9].payload, "new".as_bytes());
    drop(log);
    assert_eq!(
        read_all(&TopicLog::open(Files::real(), dir.path(), small(10_000)).unwrap()).len(),
        10
    );
}

#[test]
fn recovery_truncates_at_bad_crc() {
    let dir = TempDir::new().unwrap();
    // One index entry for the whole segment, so recovery scans all of it.
    let config = LogConfig::default();
    {
        let log = TopicLog::open(Files::real(), dir.path(), config).unwrap();
        append_n(&log, 10, 1);
    }
    let path = last_log(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let record_len = bytes.len() / 10;
    // Flip a payload byte of record 6.
    bytes[record_len * 7 - 2] ^= 0x40;
    fs::write(&path, &bytes).unwrap();

    let log = TopicLog::open(Files::real(), dir.path(), config).unwrap();
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
        let log = TopicLog::open(Files::real(), dir.path(), small(10_000)).unwrap();
        append_n(&log, 10, 1);
    }
    let path = last_log(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&path, &bytes).unwrap();

    let log = TopicLog::open(Files::real(), dir.path(), small(10_000)).unwrap();
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
        let log = TopicLog::open(Files::real(), dir.path(), config).unwrap();
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

    let log = TopicLog::open(Files::real(), dir.path(), config).unwrap();
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
        let log = TopicLog::open(Files::real(), dir.path(), small(400)).unwrap();
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

    let log = TopicLog::open(Files::real(), dir.path(), small(400)).unwrap();
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
fn damaged_records_in_a_sealed_segment_are_skipped_and_the_rest_served() {
    let dir = TempDir::new().unwrap();
    let log = TopicLog::open(Files::real(), dir.path(), small(400)).unwrap();
    append_n(&log, 30, 1);
    let first = &files(dir.path(), "log")[0];
    let whole = read_all(&log);
    let in_first = whole.iter().take_while(|r| r.offset < 30).count();
    let mut bytes = fs::read(first).unwrap();
    // The last byte of the segment's last record, and a byte in the middle.
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(first, &bytes).unwrap();

    for log in [
        log,
        TopicLog::open(Files::real(), dir.path(), small(400)).unwrap(),
    ] {
        assert_eq!(log.next_offset(), 30);
        let read = read_all(&log);
        let offsets: Vec<u64> = read.iter().map(|r| r.offset).collect();
        // Some records of the first segment are lost, none after it; every
        // record served is the one stored.
        assert!(
            read.len() < 30 && read.len() >= 30 - in_first,
            "{offsets:?}"
        );
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
        for r in &read {
            assert_eq!(r, &whole[r.offset as usize]);
        }
        assert!(offsets.contains(&0) && offsets.contains(&29), "{offsets:?}");
        // A read from inside the damage starts at the next good record.
        let from_lost = (0..30).find(|o| !offsets.contains(o)).unwrap();
        let next_good = *offsets.iter().find(|o| **o > from_lost).unwrap();
        assert_eq!(
            log.read(from_lost, 1, usize::MAX).unwrap().records[0].offset,
            next_good
        );
    }
}
