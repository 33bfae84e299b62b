//! Property tests of `TopicLog` on real files: whatever is appended reads
//! back identically after a re-open, and cutting the newest segment at any
//! byte (as a crash mid-write does) keeps every record wholly before the cut.

use crate::store::Files;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use tempfile::TempDir;

use super::*;

/// Each case creates a directory and a few segment files: keep them few.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    }
}

fn new_record() -> impl Strategy<Value = NewRecord> {
    (
        option::of(vec(any::<u8>(), 0..32)),
        vec((".{0,6}", ".{0,6}"), 0..3),
        vec(any::<u8>(), 0..300),
        option::of(".{0,8}"),
    )
        .prop_map(|(key, headers, payload, id)| NewRecord {
            key: key.map(Bytes::from),
            headers,
            payload: Bytes::from(payload),
            id,
        })
}

/// Small segments and a dense index, so a case spans several segments and
/// index entries.
fn log_config() -> impl Strategy<Value = LogConfig> {
    (64u64..2048, 0u64..512).prop_map(|(segment_bytes, index_interval_bytes)| LogConfig {
        segment_bytes,
        index_interval_bytes,
        retention: Retention::default(),
        sync_on_roll: true,
    })
}

fn read_all(log: &TopicLog) -> Vec<Record> {
    let mut out = Vec::new();
    let mut from = 0;
    loop {
        let batch = log.read(from, 7, 1000).expect("read");
        if batch.records.is_empty() {
            return out;
        }
        from = batch.next_offset;
        out.extend(batch.records);
    }
}

fn logs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    out.sort();
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn appended_batches_read_back_after_reopen(
        cfg in log_config(),
        batches in vec((vec(new_record(), 1..6), -50i64..50), 1..10),
    ) {
        let dir = TempDir::new().unwrap();
        let mut want = Vec::new();
        {
            let log = TopicLog::open(Files::real(), dir.path(), cfg).unwrap();
            for (batch, now) in &batches {
                let appended = log.append(batch.clone(), *now).unwrap();
                prop_assert_eq!(appended.len(), batch.len());
                for (r, sent) in appended.iter().zip(batch) {
                    prop_assert_eq!(r.offset, want.len() as u64);
                    prop_assert_eq!(&r.key, &sent.key);
                    prop_assert_eq!(&r.payload, &sent.payload);
                    want.push(r.clone());
                }
            }
            prop_assert_eq!(read_all(&log), want.clone());
            log.sync().unwrap();
        }
        // Timestamps never go back, whatever the clock said.
        prop_assert!(want.windows(2).all(|w| w[0].timestamp_ms <= w[1].timestamp_ms));

        let log = TopicLog::open(Files::real(), dir.path(), cfg).unwrap();
        prop_assert_eq!(log.next_offset(), want.len() as u64);
        prop_assert_eq!(read_all(&log), want.clone());
        for r in &want {
            let one = log.read(r.offset, 1, 0).unwrap();
            prop_assert_eq!(one.records.len(), 1);
            prop_assert_eq!(&one.records[0], r);
            prop_assert_eq!(one.next_offset, r.offset + 1);
            let first_at = want
                .iter()
                .find(|w| w.timestamp_ms >= r.timestamp_ms)
                .map(|w| w.offset);
            prop_assert_eq!(Some(log.offset_for_timestamp(r.timestamp_ms).unwrap()), first_at);
        }
        let more = log.append(vec![NewRecord::default()], 0).unwrap();
        prop_assert_eq!(more[0].offset, want.len() as u64);
    }

    #[test]
    fn cutting_the_last_segment_keeps_every_record_before_the_cut(
        cfg in log_config(),
        records in vec(new_record(), 1..25),
        cut in any::<prop::sample::Index>(),
        garbage in vec(any::<u8>(), 0..64),
    ) {
        let dir = TempDir::new().unwrap();
        // Per record: its segment file and where it ends in that file.
        let mut placed = Vec::new();
        let mut stored = Vec::new();
        {
            let log = TopicLog::open(Files::real(), dir.path(), cfg).unwrap();
            for (i, r) in records.iter().enumerate() {
                stored.extend(log.append(vec![r.clone()], i as i64).unwrap());
                let path = logs(dir.path()).pop().unwrap();
                let end = fs::metadata(&path).unwrap().len();
                placed.push((path, end));
            }
            log.sync().unwrap();
        }
        let last = logs(dir.path()).pop().unwrap();
        let len = fs::metadata(&last).unwrap().len();
        let cut = cut.index(len as usize + 1) as u64;
        let file = OpenOptions::new().write(true).open(&last).unwrap();
        file.set_len(cut).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &garbage, cut).unwrap();
        drop(file);

        let kept: Vec<Record> = stored
            .iter()
            .zip(&placed)
            .filter(|(_, (path, end))| *path != last || *end <= cut)
            .map(|(r, _)| r.clone())
            .collect();
        // What is kept is a prefix: a record is only lost with all after it.
        prop_assert!(kept.iter().enumerate().all(|(i, r)| r.offset == i as u64));

        let log = TopicLog::open(Files::real(), dir.path(), cfg).unwrap();
        prop_assert_eq!(log.next_offset(), kept.len() as u64);
        prop_assert_eq!(read_all(&log), kept.clone());
        let after = log.append(vec![records[0].clone()], 1_000).unwrap();
        prop_assert_eq!(after[0].offset, kept.len() as u64);
        drop(log);

        let log = TopicLog::open(Files::real(), dir.path(), cfg).unwrap();
        let mut all = kept;
        all.extend(after);
        prop_assert_eq!(read_all(&log), all);
    }
}
