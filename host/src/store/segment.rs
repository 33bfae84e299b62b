//! One segment: a `<base>.log` file of framed records plus its `<base>.idx` sparse index.
//!
//! Only the appender writes (positional writes at the committed length); readers use
//! positional reads bounded by the committed length, which is published after the bytes are
//! in the file, so a reader never sees a half-written record.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use super::config::LogConfig;
use super::cursor::{Cursor, CursorError};
use super::error::StoreError;
use super::files::{Files, Handle};
use super::index::{self, IndexEntry, SparseIndex};
use super::record::Record;
use super::recovery::{first_entry_matches, scan};
use crate::disk::{Disk, DiskFile, OpenMode};

/// Digits in a segment file name.
const NAME_DIGITS: usize = 20;

/// Parses `<20 digits>.log` into a base offset. `Ok(None)` for files that are not `.log`.
pub(crate) fn parse_segment_name(path: &Path) -> Result<Option<u64>, StoreError> {
    if path.extension().and_then(|e| e.to_str()) != Some("log") {
        return Ok(None);
    }
    let bad = || StoreError::BadSegmentName {
        path: path.to_path_buf(),
    };
    let stem = path.file_stem().and_then(|s| s.to_str()).ok_or_else(bad)?;
    if stem.len() != NAME_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    stem.parse::<u64>().map(Some).map_err(|_| bad())
}

fn segment_paths(dir: &Path, base: u64) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{base:020}.log")),
        dir.join(format!("{base:020}.idx")),
    )
}

/// A segment file, its index, and what readers may see of it.
#[derive(Debug)]
pub(crate) struct Segment {
    base: u64,
    log_path: PathBuf,
    idx_path: PathBuf,
    file: Handle,
    idx_file: Handle,
    index: SparseIndex,
    /// Bytes of complete records; readers never read past it.
    len: AtomicU64,
    /// Offset after the last complete record.
    end_offset: AtomicU64,
    first_ts: AtomicI64,
    last_ts: AtomicI64,
    /// `len` as of the last successful fsync.
    synced_len: AtomicU64,
    /// Damage in the log was reported.
    damage_logged: AtomicBool,
}

/// Whether the segment at `base` starts with a valid record.
pub(crate) fn holds_records(disk: &dyn Disk, dir: &Path, base: u64) -> Result<bool, StoreError> {
    let (log_path, _) = segment_paths(dir, base);
    let file = disk
        .open(&log_path, OpenMode::Existing)
        .map_err(|e| StoreError::io("open", &log_path, e))?;
    let len = file
        .len()
        .map_err(|e| StoreError::io("stat", &log_path, e))?;
    let mut cursor = Cursor::new(&*file, &log_path, 0, base, len, 64 * 1024);
    match cursor.next_record() {
        Ok(found) => Ok(found.is_some()),
        Err(CursorError::Bad { .. }) => Ok(false),
        Err(CursorError::Io(e)) => Err(e),
    }
}

/// Removes the files of the segment at `base`.
pub(crate) fn remove(disk: &dyn Disk, dir: &Path, base: u64) -> Result<(), StoreError> {
    let (log_path, idx_path) = segment_paths(dir, base);
    for path in [idx_path, log_path] {
        match disk.remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(StoreError::io("remove", &path, e))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Appender-side facts about a recovered active segment.
pub(crate) struct Tail {
    /// Position of the newest index entry, if any.
    pub last_index_pos: Option<u64>,
    /// Length of the index file.
    pub idx_len: u64,
    /// Timestamp of the newest record in this segment.
    pub last_ts: Option<i64>,
    /// A sealed segment whose valid records end before the next segment's base.
    pub short: bool,
}

/// How `open` treats a segment.
pub(crate) enum Role {
    /// An older segment; `next_base` is the base offset of the segment after it.
    Sealed { next_base: u64 },
    /// The newest segment: a bad tail is truncated away.
    Active,
}

impl Segment {
    /// Creates a fresh, empty segment starting at `base`. An empty `.log`
    /// left by an earlier try that failed half-way is taken over.
    pub(crate) fn create(files: &Files, dir: &Path, base: u64) -> Result<Segment, StoreError> {
        let disk = files.disk();
        let (log_path, idx_path) = segment_paths(dir, base);
        let file = match files.open(&log_path, OpenMode::CreateNew) {
            Err(StoreError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                let file = files.open(&log_path, OpenMode::Existing)?;
                let empty = file
                    .file()?
                    .is_empty()
                    .map_err(|e| StoreError::io("stat", &log_path, e))?;
                if !empty {
                    return Err(StoreError::io("create", &log_path, source));
                }
                file
            }
            other => other?,
        };
        // A stale index without its log (crash between the two creates) is simply overwritten.
        let idx_file = match files.open(&idx_path, OpenMode::Truncate) {
            Ok(f) => f,
            Err(e) => {
                // Without its index the segment is not started: leave no `.log` behind.
                drop(file);
                let _ = disk.remove_file(&log_path);
                return Err(e);
            }
        };
        Ok(Segment {
            base,
            log_path,
            idx_path,
            file,
            idx_file,
            index: SparseIndex::default(),
            len: AtomicU64::new(0),
            end_offset: AtomicU64::new(base),
            first_ts: AtomicI64::new(0),
            last_ts: AtomicI64::new(0),
            synced_len: AtomicU64::new(0),
            damage_logged: AtomicBool::new(false),
        })
    }

    /// Opens an existing segment and recovers it as described in the module docs.
    pub(crate) fn open(
        files: &Files,
        dir: &Path,
        base: u64,
        role: Role,
        config: &LogConfig,
    ) -> Result<(Segment, Tail), StoreError> {
        let (log_path, idx_path) = segment_paths(dir, base);
        let handle = files.open(&log_path, OpenMode::Existing)?;
        let file = handle.file()?;
        let file_len = file
            .len()
            .map_err(|e| StoreError::io("stat", &log_path, e))?;
        let idx_handle = files.open(&idx_path, OpenMode::CreateOrOpen)?;
        let idx_file = idx_handle.file()?;
        let idx_bytes = idx_file
            .read_all()
            .map_err(|e| StoreError::io("read", &idx_path, e))?;
        let (mut entries, whole) = index::parse_index(&idx_bytes, file_len);
        let on_disk = entries.clone();
        let sealed = matches!(role, Role::Sealed { .. });
        // A damaged index of a sealed segment is rebuilt from scratch rather than trusted in part.
        if sealed && !whole {
            entries.clear();
        }
        let interval = config.index_interval_bytes;
        let mut found = scan(
            &*file,
            &log_path,
            base,
            entries.last().copied(),
            file_len,
            interval,
        )?;
        // The scan starts at the last entry, so it checks that entry's record: offset, position
        // and timestamp must all be the record's. The first entry (the segment's first
        // timestamp) is checked on its own; the ones between are checked when a lookup uses them.
        let last_ok = match entries.last() {
            None => true,
            Some(start) => match found.bad {
                Some((bad_pos, _)) if bad_pos == u64::from(start.position) => false,
                _ => found.first_ts == Some(start.timestamp_ms),
            },
        };
        let first_ok = match entries.as_slice() {
            [first, _, ..] => first_entry_matches(&*file, &log_path, base, first, file_len)?,
            _ => true,
        };
        if !(last_ok && first_ok) {
            // The index names something that is not the record it claims: distrust it.
            tracing::warn!(
                path = %idx_path.display(),
                "index does not match the segment's records; rebuilding it"
            );
            entries.clear();
            found = scan(&*file, &log_path, base, None, file_len, interval)?;
        }
        let mut len = file_len;
        let end_offset;
        let mut short = false;
        match role {
            Role::Sealed { next_base } => {
                if let Some((position, reason)) = found.bad {
                    // Only the newest segment may lose data at recovery; keep the bytes so
                    // reads report the corruption instead of silently skipping offsets.
                    tracing::warn!(
                        path = %log_path.display(),
                        position,
                        reason,
                        "corrupt record in sealed segment"
                    );
                } else if found.end_offset != next_base {
                    tracing::warn!(
                        path = %log_path.display(),
                        end_offset = found.end_offset,
                        next_base,
                        "sealed segment does not end where the next one starts"
                    );
                }
                short = found.end_offset < next_base;
                end_offset = next_base;
            }
            Role::Active => {
                if let Some((position, reason)) = found.bad {
                    tracing::warn!(
                        path = %log_path.display(),
                        position,
                        bytes_cut = file_len - position,
                        reason,
                        "truncating torn or corrupt log tail"
                    );
                    file.set_len(position)
                        .and_then(|()| file.sync())
                        .map_err(|e| StoreError::io("truncate", &log_path, e))?;
                    len = position;
                    entries.retain(|e| u64::from(e.position) < position);
                }
                end_offset = found.end_offset;
            }
        }
        let first_ts = entries.first().map(|e| e.timestamp_ms).or(found.first_ts);
        let last_ts = found.last_ts.or(first_ts);
        entries.extend_from_slice(&found.new_entries);
        if entries != on_disk || !whole {
            let bytes = index::encode_all(&entries);
            idx_file
                .set_len(0)
                .and_then(|()| idx_file.write_at(&bytes, 0))
                .map_err(|e| StoreError::io("rewrite", &idx_path, e))?;
        }
        let tail = Tail {
            last_index_pos: entries.last().map(|e| u64::from(e.position)),
            idx_len: (entries.len() * index::ENTRY_LEN) as u64,
            last_ts,
            short,
        };
        let segment = Segment {
            base,
            log_path,
            idx_path,
            file: handle,
            idx_file: idx_handle,
            index: SparseIndex::new(entries),
            len: AtomicU64::new(len),
            end_offset: AtomicU64::new(end_offset),
            first_ts: AtomicI64::new(first_ts.unwrap_or(0)),
            last_ts: AtomicI64::new(last_ts.unwrap_or(0)),
            synced_len: AtomicU64::new(0),
            damage_logged: AtomicBool::new(false),
        };
        Ok((segment, tail))
    }

    /// Offset of the first record in this segment.
    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    /// Bytes of complete records.
    pub(crate) fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    /// Offset after the last complete record.
    pub(crate) fn end_offset(&self) -> u64 {
        self.end_offset.load(Ordering::Acquire)
    }

    /// `(oldest, newest)` record timestamps, `None` while empty.
    pub(crate) fn timestamps(&self) -> Option<(i64, i64)> {
        if self.len() == 0 {
            return None;
        }
        Some((
            self.first_ts.load(Ordering::Relaxed),
            self.last_ts.load(Ordering::Relaxed),
        ))
    }

    /// Writes encoded records at `position` (appender only).
    pub(crate) fn write_records(&self, bytes: &[u8], position: u64) -> Result<(), StoreError> {
        self.file
            .file()?
            .write_at(bytes, position)
            .map_err(|e| StoreError::io("write", &self.log_path, e))
    }

    /// Cuts the file back to `len` bytes: what a failed append may have
    /// left past it goes (appender only).
    pub(crate) fn cut(&self, len: u64) -> Result<(), StoreError> {
        self.file
            .file()?
            .set_len(len)
            .map_err(|e| StoreError::io("truncate", &self.log_path, e))
    }

    /// Writes encoded index entries at `position` of the index file (appender only).
    pub(crate) fn write_index(&self, bytes: &[u8], position: u64) -> Result<(), StoreError> {
        self.idx_file
            .file()?
            .write_at(bytes, position)
            .map_err(|e| StoreError::io("write", &self.idx_path, e))
    }

    /// Makes appended records visible to readers. `first_ts` is set for a segment's first record.
    pub(crate) fn publish(
        &self,
        len: u64,
        end_offset: u64,
        first_ts: Option<i64>,
        last_ts: i64,
        entries: &[IndexEntry],
    ) {
        self.index.extend(entries);
        if let Some(ts) = first_ts {
            self.first_ts.store(ts, Ordering::Relaxed);
        }
        self.last_ts.store(last_ts, Ordering::Relaxed);
        self.end_offset.store(end_offset, Ordering::Release);
        // Last: a reader that sees the new length sees everything above.
        self.len.store(len, Ordering::Release);
    }

    /// fsyncs the log and index if anything was appended since the last call.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        let len = self.len();
        if self.synced_len.load(Ordering::Acquire) >= len {
            return Ok(());
        }
        self.sync_now()?;
        self.synced_len.fetch_max(len, Ordering::AcqRel);
        Ok(())
    }

    /// The segment is sealed and its last write fsynced: its files may be
    /// closed and opened again on demand (see `store::files`).
    pub(crate) fn manage_files(&self) {
        self.file.manage();
        self.idx_file.manage();
    }

    /// fsyncs the log and index whatever was published (appender only: a
    /// segment about to be sealed, with records not yet published).
    pub(crate) fn sync_now(&self) -> Result<(), StoreError> {
        self.file
            .file()?
            .sync()
            .map_err(|e| StoreError::io("fsync", &self.log_path, e))?;
        self.idx_file
            .file()?
            .sync()
            .map_err(|e| StoreError::io("fsync", &self.idx_path, e))
    }

    /// Deletes both files; the open handles stay readable for in-flight readers.
    pub(crate) fn remove_files(&self, disk: &dyn Disk) -> Result<(), StoreError> {
        disk.remove_file(&self.log_path)
            .map_err(|e| StoreError::io("remove", &self.log_path, e))?;
        match disk.remove_file(&self.idx_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StoreError::io("remove", &self.idx_path, e))
            }
            _ => Ok(()),
        }
    }

    fn corrupt(&self, position: u64, reason: &'static str) -> StoreError {
        StoreError::Corrupt {
            path: self.log_path.clone(),
            position,
            reason,
        }
    }

    /// A cursor at `entry`'s record (the segment start without one), bounded by the committed
    /// length.
    fn cursor_from<'a>(
        &'a self,
        file: &'a dyn DiskFile,
        entry: Option<IndexEntry>,
        chunk: usize,
    ) -> Cursor<'a> {
        let (pos, offset) = entry.map_or((0, self.base), |e| {
            (u64::from(e.position), self.base + u64::from(e.rel_offset))
        });
        Cursor::new(file, &self.log_path, pos, offset, self.len(), chunk)
    }

    /// Forgets an index entry that does not match the record it names (a damaged index file
    /// that recovery could not tell from a good one), so that the lookup that found out, and
    /// every later one, starts from an earlier entry instead.
    fn distrust(&self, entry: IndexEntry, reason: &'static str) {
        if self.index.remove(&entry) {
            tracing::warn!(
                path = %self.idx_path.display(),
                position = entry.position,
                reason,
                "index entry does not match its record; ignoring it"
            );
        }
    }

    /// Damage at `position` that reads skip: logged once, and the record
    /// reads resume at (if any) indexed, so later lookups start past it.
    fn note_damage(&self, position: u64, resumed: Option<(u64, u64, i64)>, reason: &'static str) {
        if !self.damage_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(path = %self.log_path.display(), position, resumed = ?resumed.map(|r| r.0), reason, "damaged records in the log are skipped; the records after them are served");
        }
        if let Some((at, offset, timestamp_ms)) = resumed {
            self.index.insert(IndexEntry {
                // Fits: inside this segment.
                rel_offset: (offset - self.base) as u32,
                position: at as u32,
                timestamp_ms,
            });
        }
    }

    /// Appends records `from..end` to `out` while the budget lasts. Returns whether the
    /// budget ran out (as opposed to the segment).
    pub(crate) fn read_into(
        &self,
        from: u64,
        end: u64,
        budget: &mut ReadBudget,
        out: &mut Vec<Record>,
    ) -> Result<bool, StoreError> {
        let file = self.file.file()?;
        let rel = from.saturating_sub(self.base);
        let mut start = self.index.floor_offset(rel);
        let mut cursor = self.cursor_from(&*file, start, budget.chunk);
        loop {
            let framed = match cursor.next_record() {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(false),
                Err(CursorError::Io(e)) => return Err(e),
                Err(CursorError::Bad { position, reason }) => match start {
                    // Nothing was read yet: the index entry is wrong, not the log.
                    Some(entry) if u64::from(entry.position) == position => {
                        self.distrust(entry, reason);
                        start = self.index.floor_offset(rel);
                        cursor = self.cursor_from(&*file, start, budget.chunk);
                        continue;
                    }
                    // Damage in the log: the records after it are served, the
                    // damaged ones are lost (readers see a gap in the offsets).
                    _ => match cursor.resync() {
                        Ok(Some(resumed)) => {
                            self.note_damage(position, Some(resumed), reason);
                            start = None;
                            continue;
                        }
                        Ok(None) => {
                            self.note_damage(position, None, reason);
                            return Ok(false);
                        }
                        Err(CursorError::Io(e)) => return Err(e),
                        Err(CursorError::Bad { .. }) => return Err(self.corrupt(position, reason)),
                    },
                },
            };
            let offset = framed.layout.offset;
            if offset >= end {
                return Ok(false);
            }
            if offset < from {
                continue;
            }
            let payload = framed.layout.payload_len();
            if !out.is_empty() && budget.bytes.saturating_add(payload) > budget.max_bytes {
                return Ok(true);
            }
            let record = framed
                .layout
                .decode(&framed.body)
                .map_err(|reason| self.corrupt(framed.position, reason))?;
            out.push(record);
            budget.bytes = budget.bytes.saturating_add(payload);
            if out.len() >= budget.max_records {
                return Ok(true);
            }
        }
    }

    /// The first offset in this segment whose timestamp is `>= ts_ms`, if any.
    pub(crate) fn offset_for_timestamp(
        &self,
        ts_ms: i64,
        chunk: usize,
    ) -> Result<Option<u64>, StoreError> {
        let file = self.file.file()?;
        'lookup: loop {
            let start = self.index.last_before_time(ts_ms);
            let mut cursor = self.cursor_from(&*file, start, chunk);
            // The first record is the entry's: an entry that claims an older timestamp than its
            // record has would make the lookup skip the records before that one.
            let mut unchecked = start;
            loop {
                match cursor.next_record() {
                    Ok(Some(f)) => {
                        if let Some(entry) = unchecked.take() {
                            if f.layout.timestamp_ms != entry.timestamp_ms {
                                self.distrust(entry, "timestamp differs from the record's");
                                continue 'lookup;
                            }
                        }
                        if f.layout.timestamp_ms >= ts_ms {
                            return Ok(Some(f.layout.offset));
                        }
                    }
                    Ok(None) => return Ok(None),
                    Err(CursorError::Io(e)) => return Err(e),
                    Err(CursorError::Bad { position, reason }) => match unchecked {
                        Some(entry) if u64::from(entry.position) == position => {
                            self.distrust(entry, reason);
                            continue 'lookup;
                        }
                        _ => return Err(self.corrupt(position, reason)),
                    },
                }
            }
        }
    }
}

/// Limits of one `read` call, carried across segments.
pub(crate) struct ReadBudget {
    pub max_records: usize,
    pub max_bytes: usize,
    /// Payload bytes returned so far.
    pub bytes: usize,
    /// Size of each positional read.
    pub chunk: usize,
}
