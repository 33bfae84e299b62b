//! A topic log whose newest segment or index was damaged, as by a crash
//! mid-write or a bad disk: recovery never panics, keeps every record stored
//! wholly before the damage, and the log takes and keeps new appends
//! afterwards.
//!
//! Input: one byte picks the damage, two bytes a position, the rest are the
//! bytes written there.

#![no_main]

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice::store::{LogConfig, NewRecord, Record, TopicLog};

const RECORDS: u64 = 8;

fn record(i: u64) -> NewRecord {
    NewRecord {
        key: i.is_multiple_of(2).then(|| Bytes::from(format!("k{i}"))),
        headers: vec![("n".into(), i.to_string())],
        payload: Bytes::from(format!("payload {i} {}", "x".repeat(i as usize * 23 % 90))),
        id: i.is_multiple_of(3).then(|| format!("id-{i}")),
    }
}

fn config() -> LogConfig {
    LogConfig {
        // Small segments: the records span several, so there are sealed
        // segments before the damaged active one, and several index
        // entries in each.
        segment_bytes: 320,
        index_interval_bytes: 40,
        ..LogConfig::default()
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<_> = fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs
}

fn read_all(log: &TopicLog) -> Vec<Record> {
    let mut out = Vec::new();
    let mut from = 0;
    loop {
        let batch = log.read(from, 3, 200).expect("stored records read back");
        if batch.records.is_empty() {
            return out;
        }
        from = batch.next_offset;
        out.extend(batch.records);
    }
}

/// The first `kept` records read back as stored: in one run, one by one,
/// and by time. With `full`, so does everything the log holds (only damage
/// in the middle of the newest segment may leave a record that reads as
/// corrupt after them).
fn check_kept(log: &TopicLog, stored: &[Record], kept: usize, full: bool) {
    if full {
        let all = read_all(log);
        assert!(
            all.len() >= kept,
            "records stored before the damage were lost"
        );
        assert_eq!(&all[..kept], &stored[..kept], "a stored record changed");
    }
    if kept == 0 {
        return;
    }
    let run = log
        .read(0, kept, usize::MAX)
        .expect("the kept records read");
    assert_eq!(
        run.records,
        &stored[..kept],
        "records stored before the damage were lost"
    );
    for r in &stored[..kept] {
        let one = log.read(r.offset, 1, 0).expect("a single record reads");
        assert_eq!(one.records.first(), Some(r));
        let at = log
            .offset_for_timestamp(r.timestamp_ms)
            .expect("time lookup");
        assert_eq!(at, r.offset, "time lookup missed offset {}", r.offset);
    }
}

fn temp_root() -> tempfile::TempDir {
    // tmpfs where there is one: each run creates a dozen files.
    if Path::new("/dev/shm").is_dir() {
        if let Ok(dir) = tempfile::tempdir_in("/dev/shm") {
            return dir;
        }
    }
    tempfile::tempdir().expect("temp dir")
}

/// XORs `mask` into `path` from `at` (extending the file with the mask's
/// bytes past its end); returns the first byte actually changed.
fn xor_into(path: &Path, at: u64, mask: &[u8]) -> Option<u64> {
    let mut bytes = fs::read(path).expect("read");
    let at = (at as usize).min(bytes.len());
    let mut first = None;
    for (i, m) in mask.iter().enumerate() {
        let p = at + i;
        if p < bytes.len() {
            bytes[p] ^= m;
            if *m != 0 {
                first.get_or_insert(p as u64);
            }
        } else {
            bytes.push(*m);
            first.get_or_insert(p as u64);
        }
    }
    fs::write(path, &bytes).expect("write");
    first
}

fuzz_target!(|data: &[u8]| {
    let [mode, hi, lo, garbage @ ..] = data else {
        return;
    };
    let at = u64::from(u16::from_be_bytes([*hi, *lo]));
    let root = temp_root();
    let dir = root.path().join("topic");

    // Store the records one by one, noting the segment and end of each.
    let mut stored = Vec::new();
    let mut placed = Vec::new();
    {
        let log = TopicLog::open(sluice::store::Files::real(), &dir, config())
            .expect("a fresh log opens");
        for i in 0..RECORDS {
            stored.extend(
                log.append(vec![record(i)], 1_000 + i as i64)
                    .expect("append"),
            );
            let last = segments(&dir).pop().expect("a segment");
            let end = fs::metadata(&last).expect("stat").len();
            placed.push((last, end));
        }
        log.sync().expect("sync");
    }
    let last = segments(&dir).pop().expect("a segment");
    let len = fs::metadata(&last).expect("stat").len();
    // The records of the newest segment that end at or before `limit`, and
    // all the older ones, must survive.
    let kept_before = |limit: u64| {
        placed
            .iter()
            .take_while(|(path, end)| *path != last || *end <= limit)
            .count()
    };
    let mode = mode % 6;
    let kept = match mode {
        // Garbage after the last record (a torn or damaged write).
        0 => {
            let f = OpenOptions::new().append(true).open(&last).expect("open");
            f.write_all_at(garbage, len).expect("write");
            stored.len()
        }
        // Cut anywhere, then garbage (a crash before the data hit the disk).
        1 => {
            let cut = at % (len + 1);
            let f = OpenOptions::new().write(true).open(&last).expect("open");
            f.set_len(cut).expect("truncate");
            f.write_all_at(garbage, cut).expect("write");
            kept_before(cut)
        }
        // Bits flipped in the newest segment from a position on.
        2 => match xor_into(&last, at % (len + 1), garbage) {
            Some(first) => kept_before(first),
            None => stored.len(),
        },
        // A newer segment of arbitrary bytes, right after the end or after
        // a gap, without an index.
        3 => {
            let base = RECORDS + at % 4;
            fs::write(dir.join(format!("{base:020}.log")), garbage).expect("write");
            stored.len()
        }
        // The newest index replaced by arbitrary bytes.
        4 => {
            fs::write(last.with_extension("idx"), garbage).expect("write");
            stored.len()
        }
        // Bits flipped in the newest index (plausible but wrong entries).
        _ => {
            let idx = last.with_extension("idx");
            let idx_len = fs::metadata(&idx).expect("stat").len();
            xor_into(&idx, at % (idx_len + 1), garbage);
            stored.len()
        }
    };

    let log = match TopicLog::open(sluice::store::Files::real(), &dir, config()) {
        Ok(log) => log,
        // A clear error is acceptable (a panic is not: the fuzzer catches
        // it); none of these damages is expected to need one.
        Err(e) => panic!("recovery refused the log: {e}"),
    };
    check_kept(&log, &stored, kept, mode != 2);
    let next = log.next_offset();
    assert!(
        next >= kept as u64,
        "next offset {next} below {kept} kept records"
    );
    let appended = log
        .append(vec![record(99)], 10_000)
        .expect("the recovered log takes appends");
    assert_eq!(appended[0].offset, next);
    log.sync().expect("sync");
    drop(log);

    let log = TopicLog::open(sluice::store::Files::real(), &dir, config())
        .expect("reopens after recovery");
    check_kept(&log, &stored, kept, mode != 2);
    let batch = log.read(next, 1, 1 << 20).expect("read the new record");
    assert_eq!(
        batch.records.first(),
        appended.first(),
        "the append after recovery was lost"
    );
    assert_eq!(log.next_offset(), next + 1);
});
