//! `TopicLog`: the ordered list of segments of one topic, with append, read, roll, recovery
//! and retention.
//!
//! Locking: one mutex serialises appenders (and owns the reusable encode buffers); the segment
//! list sits behind a read-write lock that is only held long enough to clone an `Arc`; readers
//! then work on the segment with positional reads and never block the appender. `sync` takes
//! its own mutex so concurrent callers each wait for a complete fsync, while appends go on.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::config::LogConfig;
use super::error::StoreError;
use super::files::Files;
use super::record::Record;
use super::segment::{self, ReadBudget, Role, Segment, Tail};
use crate::disk::Disk;
use crate::sync::{lock, read, write};
/// Bounds of a single positional read when serving `read`.
const MIN_READ_CHUNK: usize = 16 * 1024;
const MAX_READ_CHUNK: usize = 8 * 1024 * 1024;
/// Guess of a record's size used to avoid reading far more than `max_records` needs.
const ESTIMATED_RECORD_BYTES: usize = 4096;

/// What `read` returned.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadBatch {
    /// Records in offset order, without gaps.
    pub records: Vec<Record>,
    /// Offset to read from next.
    pub next_offset: u64,
}

/// A snapshot of a log's extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogInfo {
    /// Oldest offset still stored.
    pub start_offset: u64,
    /// Offset the next appended record will get.
    pub next_offset: u64,
    /// Size of all segment files.
    pub bytes: u64,
    /// Number of segments, including the active one.
    pub segments: usize,
    /// Timestamp of the oldest stored record.
    pub oldest_timestamp_ms: Option<i64>,
    /// Timestamp of the newest stored record.
    pub newest_timestamp_ms: Option<i64>,
}

/// What `apply_retention` removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Whole segments deleted.
    pub segments_removed: usize,
    /// Bytes of segment files deleted.
    pub bytes_removed: u64,
    /// Records deleted.
    pub messages_removed: u64,
}

/// Appender state; only touched under `TopicLog::writer`.
pub(super) struct Writer {
    pub active: Arc<Segment>,
    pub next_offset: u64,
    pub last_ts: Option<i64>,
    /// Position of the newest index entry in the active segment.
    pub last_index_pos: Option<u64>,
    /// Bytes written to the active segment's index file.
    pub idx_len: u64,
    pub buf: Vec<u8>,
    /// Segments sealed by a roll and not yet fsynced.
    pub unsynced: Vec<Arc<Segment>>,
    /// A segment file was created since the directory was last fsynced.
    pub dir_dirty: bool,
    /// Why the log refuses writes, once it does.
    pub failed: Option<Arc<str>>,
}

/// The append-only log of one topic, stored as segment files in one directory.
pub struct TopicLog {
    pub(super) files: Files,
    pub(super) dir: PathBuf,
    pub(super) config: LogConfig,
    /// Oldest first; the last one is the active segment. Never empty.
    segments: RwLock<Vec<Arc<Segment>>>,
    pub(super) writer: Mutex<Writer>,
    /// Held while fsyncing, so fsyncs run one at a time and a delete can
    /// move the files with none in progress; true once the log is retired
    /// ([`TopicLog::retire`]), after which fsyncs have nothing to do.
    pub(super) sync_lock: Mutex<bool>,
    /// Published after the records below it are readable.
    pub(super) next_offset: AtomicU64,
    start_offset: AtomicU64,
}

impl TopicLog {
    /// Opens the log in `dir` on `disk` (creating the directory if missing) and recovers
    /// it. What it recovers is fsynced before it counts: the segments, their indexes and
    /// the directory.
    pub fn open(files: Files, dir: &Path, config: LogConfig) -> Result<TopicLog, StoreError> {
        let disk = files.disk().clone();
        disk.create_dir_all(dir)
            .map_err(|e| StoreError::io("create", dir, e))?;
        let mut bases = Vec::new();
        let entries = disk
            .read_dir(dir)
            .map_err(|e| StoreError::io("list", dir, e))?;
        for entry in entries {
            if let Some(base) = segment::parse_segment_name(&dir.join(&entry.name))? {
                bases.push(base);
            }
        }
        bases.sort_unstable();

        let mut segments = Vec::with_capacity(bases.len().max(1));
        let mut tail = Tail {
            last_index_pos: None,
            idx_len: 0,
            last_ts: None,
            short: false,
        };
        let mut i = 0;
        while i < bases.len() {
            let base = bases[i];
            let role = match bases.get(i + 1) {
                Some(&next_base) => Role::Sealed { next_base },
                None => Role::Active,
            };
            let (mut seg, mut seg_tail) = Segment::open(&files, dir, base, role, &config)?;
            if seg_tail.short && !later_hold_records(&*disk, dir, &bases[i + 1..])? {
                // A power loss cut this segment after a roll: the segments after it hold
                // nothing that was made durable (a segment is fsynced whole before any
                // later one), so it is the end of the log, not a damaged middle.
                tracing::warn!(dir = %dir.display(), base, dropped = bases.len() - i - 1, "log ends in a segment cut by a crash; dropping the empty segments after it");
                for &later in &bases[i + 1..] {
                    segment::remove(&*disk, dir, later)?;
                }
                bases.truncate(i + 1);
                drop(seg);
                (seg, seg_tail) = Segment::open(&files, dir, base, Role::Active, &config)?;
            }
            // Recovered bytes may still be only in the page cache (a crash under a lax
            // fsync policy): make them durable before they count as stored.
            seg.sync()?;
            if i + 1 < bases.len() {
                seg.manage_files();
            }
            segments.push(Arc::new(seg));
            tail = seg_tail;
            i += 1;
        }
        let active = match segments.last() {
            Some(seg) => Arc::clone(seg),
            None => {
                let seg = Arc::new(Segment::create(&files, dir, 0)?);
                segments.push(Arc::clone(&seg));
                seg
            }
        };
        // The active segment may be empty (fresh roll, or its whole content was torn).
        let last_ts = tail.last_ts.or_else(|| {
            segments
                .iter()
                .rev()
                .find_map(|s| s.timestamps().map(|(_, last)| last))
        });
        let next_offset = active.end_offset();
        let start_offset = segments.first().map_or(0, |s| s.base());
        tracing::debug!(dir = %dir.display(), start_offset, next_offset, segments = segments.len(), "opened topic log");
        disk.sync_dir(dir)
            .map_err(|e| StoreError::io("fsync", dir, e))?;
        Ok(TopicLog {
            files,
            dir: dir.to_path_buf(),
            config,
            segments: RwLock::new(segments),
            writer: Mutex::new(Writer {
                active,
                next_offset,
                last_ts,
                last_index_pos: tail.last_index_pos,
                idx_len: tail.idx_len,
                buf: Vec::new(),
                unsynced: Vec::new(),
                dir_dirty: false,
                failed: None,
            }),
            sync_lock: Mutex::new(false),
            next_offset: AtomicU64::new(next_offset),
            start_offset: AtomicU64::new(start_offset),
        })
    }

    fn segments(&self) -> RwLockReadGuard<'_, Vec<Arc<Segment>>> {
        read(&self.segments)
    }

    pub(super) fn segments_mut(&self) -> RwLockWriteGuard<'_, Vec<Arc<Segment>>> {
        write(&self.segments)
    }

    fn read_chunk(&self, max_records: usize, max_bytes: usize) -> usize {
        let payload = max_bytes.min(max_records.saturating_mul(ESTIMATED_RECORD_BYTES));
        // Room for framing, and for the records between the index entry and `from`.
        let interval = usize::try_from(self.config.index_interval_bytes).unwrap_or(usize::MAX);
        payload
            .saturating_add(payload / 8)
            .saturating_add(interval)
            .clamp(MIN_READ_CHUNK, MAX_READ_CHUNK)
    }

    /// Reads up to `max_records` records / roughly `max_bytes` of payload (at least one record
    /// if any is available) starting at `from`. Below the start offset it starts at the start
    /// offset; at or past the end it returns an empty batch with `next_offset = from`.
    /// Runs concurrently with appends and only sees fully written records. A record that fails
    /// validation is a [`StoreError::Corrupt`].
    pub fn read(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<ReadBatch, StoreError> {
        let next = self.next_offset.load(Ordering::Acquire);
        let (mut seg, mut from) = {
            let segs = self.segments();
            let from = from.max(segs.first().map_or(0, |s| s.base()));
            let i = segs.partition_point(|s| s.base() <= from).saturating_sub(1);
            match segs.get(i) {
                Some(seg) if from < next && max_records > 0 => (Arc::clone(seg), from),
                _ => {
                    return Ok(ReadBatch {
                        records: Vec::new(),
                        next_offset: from,
                    })
                }
            }
        };
        let mut budget = ReadBudget {
            max_records,
            max_bytes,
            bytes: 0,
            chunk: self.read_chunk(max_records, max_bytes),
        };
        let mut records = Vec::new();
        loop {
            let end = seg.end_offset().min(next);
            if from < end {
                let full = seg.read_into(from, end, &mut budget, &mut records)?;
                if let Some(last) = records.last() {
                    from = last.offset + 1;
                }
                if full || from >= next {
                    break;
                }
            }
            let following = {
                let segs = self.segments();
                let i = segs.partition_point(|s| s.base() <= seg.base());
                segs.get(i).cloned()
            };
            match following {
                Some(s) => {
                    // Skips offsets lost inside a damaged sealed segment instead of looping.
                    from = from.max(s.base());
                    seg = s;
                }
                None => break,
            }
            if from >= next {
                break;
            }
        }
        Ok(ReadBatch {
            records,
            next_offset: from,
        })
    }

    /// The first offset whose timestamp is `>= ts_ms`, or `next_offset()` if none.
    pub fn offset_for_timestamp(&self, ts_ms: i64) -> Result<u64, StoreError> {
        let next = self.next_offset.load(Ordering::Acquire);
        // Timestamps never decrease, so the answer is in the first segment reaching ts_ms.
        let seg = {
            let segs = self.segments();
            segs.iter()
                .find(|s| s.timestamps().is_some_and(|(_, last)| last >= ts_ms))
                .cloned()
        };
        let Some(seg) = seg else {
            return Ok(next);
        };
        let chunk = self.read_chunk(1, 0);
        Ok(seg
            .offset_for_timestamp(ts_ms, chunk)?
            .unwrap_or_else(|| seg.end_offset()))
    }

    /// Oldest offset still stored.
    pub fn start_offset(&self) -> u64 {
        self.start_offset.load(Ordering::Acquire)
    }

    /// Offset the next appended record will get.
    pub fn next_offset(&self) -> u64 {
        self.next_offset.load(Ordering::Acquire)
    }

    /// A snapshot of the log's extent.
    pub fn info(&self) -> LogInfo {
        let next_offset = self.next_offset();
        let segs = self.segments();
        LogInfo {
            start_offset: segs.first().map_or(next_offset, |s| s.base()),
            next_offset,
            bytes: segs.iter().map(|s| s.len()).sum(),
            segments: segs.len(),
            oldest_timestamp_ms: segs
                .iter()
                .find_map(|s| s.timestamps())
                .map(|(first, _)| first),
            newest_timestamp_ms: segs
                .iter()
                .rev()
                .find_map(|s| s.timestamps())
                .map(|(_, last)| last),
        }
    }

    /// The configuration the log was opened with.
    pub fn config(&self) -> LogConfig {
        self.config
    }

    /// Removes whole sealed segments beyond the retention limits: by age (newest record older
    /// than `now_ms - max_age_ms`), by bytes (drop the oldest while the rest stays
    /// `>= max_bytes`), by messages (likewise with record counts). Never removes the active
    /// segment. Deletes the segment and index files.
    pub fn apply_retention(&self, now_ms: i64) -> Result<RetentionOutcome, StoreError> {
        let limits = self.config.retention;
        if limits.max_age_ms.is_none()
            && limits.max_bytes.is_none()
            && limits.max_messages.is_none()
        {
            return Ok(RetentionOutcome::default());
        }
        let cutoff = limits
            .max_age_ms
            .map(|age| now_ms.saturating_sub(i64::try_from(age).unwrap_or(i64::MAX)));
        self.remove_oldest(|seg, bytes_left, messages_left| {
            let messages = seg.end_offset().saturating_sub(seg.base());
            let too_old = cutoff.is_some_and(|c| seg.timestamps().is_none_or(|(_, last)| last < c));
            let too_big = limits
                .max_bytes
                .is_some_and(|m| bytes_left - seg.len() >= m);
            let too_many = limits
                .max_messages
                .is_some_and(|m| messages_left.saturating_sub(messages) >= m);
            too_old || too_big || too_many
        })
    }

    /// Removes the whole sealed segments that hold only records below
    /// `offset`. Never removes the active segment.
    pub fn trim_before(&self, offset: u64) -> Result<RetentionOutcome, StoreError> {
        self.remove_oldest(|seg, _, _| seg.end_offset() <= offset)
    }

    /// Removes sealed segments from the oldest on while `remove(segment,
    /// bytes left, messages left)` says so, and their files.
    fn remove_oldest(
        &self,
        mut remove: impl FnMut(&Segment, u64, u64) -> bool,
    ) -> Result<RetentionOutcome, StoreError> {
        let mut outcome = RetentionOutcome::default();
        let removed: Vec<Arc<Segment>> = {
            // Rolls also take this lock, so the last entry stays the active segment meanwhile.
            let mut segs = self.segments_mut();
            let sealed = segs.len().saturating_sub(1);
            let mut bytes_left: u64 = segs.iter().map(|s| s.len()).sum();
            let start = segs.first().map_or(0, |s| s.base());
            let mut messages_left = self.next_offset().saturating_sub(start);
            let mut count = 0;
            for seg in segs.iter().take(sealed) {
                if !remove(seg, bytes_left, messages_left) {
                    break;
                }
                let bytes = seg.len();
                let messages = seg.end_offset().saturating_sub(seg.base());
                bytes_left -= bytes;
                messages_left = messages_left.saturating_sub(messages);
                outcome.segments_removed += 1;
                outcome.bytes_removed += bytes;
                outcome.messages_removed += messages;
                count += 1;
            }
            let removed = segs.drain(..count).collect();
            if let Some(first) = segs.first() {
                self.start_offset.store(first.base(), Ordering::Release);
            }
            removed
        };
        if removed.is_empty() {
            return Ok(outcome);
        }
        {
            let mut w = lock(&self.writer);
            w.unsynced
                .retain(|s| !removed.iter().any(|r| Arc::ptr_eq(r, s)));
        }
        let mut first_error = None;
        for seg in &removed {
            if let Err(e) = seg.remove_files(&**self.files.disk()) {
                tracing::warn!(error = %e, "cannot delete expired segment");
                first_error.get_or_insert(e);
            }
        }
        tracing::debug!(dir = %self.dir.display(), ?outcome, "removed old segments");
        match first_error {
            Some(e) => Err(e),
            None => Ok(outcome),
        }
    }
}

/// Whether any of the segments at `bases` starts with a valid record.
fn later_hold_records(disk: &dyn Disk, dir: &Path, bases: &[u64]) -> Result<bool, StoreError> {
    for &base in bases {
        if segment::holds_records(disk, dir, base)? {
            return Ok(true);
        }
    }
    Ok(false)
}

impl fmt::Debug for TopicLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicLog")
            .field("dir", &self.dir)
            .field("start_offset", &self.start_offset())
            .field("next_offset", &self.next_offset())
            .finish_non_exhaustive()
    }
}
