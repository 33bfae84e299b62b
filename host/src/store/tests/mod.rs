//! Tests of `TopicLog` against real files in temporary directories, with
//! the helpers they share.
//!
//! - `reads` - appends and reads, segment rolls, concurrent readers.
//! - `recovery` - reopening after a clean close, a torn tail or damage.
//! - `retention` - segments leaving by age, size and count.
//! - `sparse_index` - time lookups and index entries that lie.

mod reads;
mod recovery;
mod retention;
mod sparse_index;

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;

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
        sync_on_roll: true,
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
