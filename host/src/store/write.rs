//! The write side of a [`TopicLog`]: append, roll, fsync, and what a
//! failure leaves.
//!
//! An append is all or nothing. Its records are encoded and written part
//! by part (one part per segment touched; a roll starts a fresh segment),
//! and only when every part is written are they published to readers. A
//! failed write undoes the append: segments it created are removed and the
//! segment it started in is cut back to where it was, so no stray bytes
//! remain past what memory knows of. When even that undo fails, or an
//! fsync fails, the log is *failed*: it refuses every later append and
//! fsync until it is opened again, which recovers it from what is really
//! on disk. A failed fsync is never retried as if nothing happened.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::error::StoreError;
use super::index::IndexEntry;
use super::log::{TopicLog, Writer};
use super::record::{self, NewRecord, Record};
use super::segment::Segment;
use crate::sync::lock;

/// Encode buffers above this are dropped after use so one huge batch does not pin memory.
const MAX_RETAINED_BUFFER: usize = 16 * 1024 * 1024;

/// The records of one append that go to one segment.
struct Part {
    segment: Arc<Segment>,
    /// Where they start in the segment.
    position: u64,
    bytes: Vec<u8>,
    entries: Vec<IndexEntry>,
    /// Offset after the part's last record.
    end_offset: u64,
    last_index_pos: Option<u64>,
}

impl TopicLog {
    /// Appends a batch; assigns dense offsets and timestamps (`max(now_ms, last timestamp)`, so
    /// timestamps never go backwards within a topic). The batch is encoded and written with
    /// one positional write per segment touched; no fsync. When this returns the records are
    /// in the OS page cache and visible to `read`.
    ///
    /// All or nothing: a batch with an unstorable record is refused whole, and a failed write
    /// leaves the log as it was (or, if that cannot be done, failed: see the module docs).
    pub fn append(&self, batch: Vec<NewRecord>, now_ms: i64) -> Result<Vec<Record>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        for rec in &batch {
            record::encoded_len(rec)?;
        }
        let mut guard = lock(&self.writer);
        let w = &mut *guard;
        if let Some(reason) = &w.failed {
            return Err(StoreError::Failed(reason.to_string()));
        }
        let ts = w.last_ts.map_or(now_ms, |last| last.max(now_ms));
        let start_len = w.active.len();
        let (parts, out) = match self.write_parts(w, batch, ts) {
            Ok(done) => done,
            Err((error, created)) => {
                self.undo(w, start_len, created);
                return Err(error);
            }
        };
        self.publish_parts(w, parts, ts);
        if w.buf.capacity() > MAX_RETAINED_BUFFER {
            w.buf = Vec::new();
        }
        Ok(out)
    }

    /// Encodes and writes the batch, rolling as segments fill. On error,
    /// returns the segments it created so the caller can undo them.
    #[allow(clippy::type_complexity)]
    fn write_parts(
        &self,
        w: &mut Writer,
        batch: Vec<NewRecord>,
        ts: i64,
    ) -> Result<(Vec<Part>, Vec<Record>), (StoreError, Vec<Arc<Segment>>)> {
        let segment_bytes = self.config.effective_segment_bytes();
        let interval = self.config.index_interval_bytes;
        let mut out = Vec::with_capacity(batch.len());
        let mut parts: Vec<Part> = Vec::new();
        let mut created: Vec<Arc<Segment>> = Vec::new();
        let mut segment = w.active.clone();
        let mut start = segment.len();
        let mut last_index_pos = w.last_index_pos;
        let mut entries = Vec::new();
        let mut offset = w.next_offset;
        w.buf.clear();
        for rec in batch {
            let size = record::encoded_len(&rec).map_err(|e| (e, created.clone()))? as u64;
            let mut pos = start + w.buf.len() as u64;
            if pos > 0 && pos.saturating_add(size) > segment_bytes {
                let bytes = std::mem::take(&mut w.buf);
                let part = Part {
                    segment: segment.clone(),
                    position: start,
                    bytes,
                    entries: std::mem::take(&mut entries),
                    end_offset: offset,
                    last_index_pos,
                };
                if !part.bytes.is_empty() {
                    if let Err(e) = self.write_part(&part) {
                        return Err((e, created));
                    }
                }
                // A sealed segment is durable before any record goes to the next one, so
                // recovery never finds a later segment holding records after a short one
                // (see `LogConfig::sync_on_roll` for when it waits for the next sync).
                if self.config.sync_on_roll {
                    if let Err(e) = part.segment.sync_now() {
                        self.fail(w, &format!("fsync failed: {e}"));
                        return Err((e, created));
                    }
                }
                if !part.bytes.is_empty() {
                    parts.push(part);
                }
                let fresh = match Segment::create(&self.files, &self.dir, offset) {
                    Ok(seg) => Arc::new(seg),
                    Err(e) => return Err((e, created)),
                };
                self.segments_mut().push(fresh.clone());
                w.dir_dirty = true;
                created.push(fresh.clone());
                segment = fresh;
                start = 0;
                last_index_pos = None;
                pos = 0;
            }
            if last_index_pos.is_none_or(|p| pos - p >= interval) {
                entries.push(IndexEntry {
                    // Fits: a segment of at most u32::MAX bytes holds fewer records than that.
                    rel_offset: (offset - segment.base()) as u32,
                    // Fits: a record only starts below segment_bytes <= u32::MAX.
                    position: pos as u32,
                    timestamp_ms: ts,
                });
                last_index_pos = Some(pos);
            }
            record::encode_into(&mut w.buf, offset, ts, &rec);
            out.push(Record {
                offset,
                timestamp_ms: ts,
                key: rec.key,
                headers: rec.headers,
                payload: rec.payload,
                id: rec.id,
            });
            offset += 1;
        }
        let part = Part {
            segment,
            position: start,
            bytes: std::mem::take(&mut w.buf),
            entries,
            end_offset: offset,
            last_index_pos,
        };
        if let Err(e) = self.write_part(&part) {
            return Err((e, created));
        }
        parts.push(part);
        Ok((parts, out))
    }

    fn write_part(&self, part: &Part) -> Result<(), StoreError> {
        part.segment.write_records(&part.bytes, part.position)
    }

    /// Takes back a failed append: the segments it created go, the one it
    /// started in is cut back to `start_len`. If that fails the log is failed.
    fn undo(&self, w: &mut Writer, start_len: u64, created: Vec<Arc<Segment>>) {
        if !created.is_empty() {
            self.segments_mut()
                .retain(|s| !created.iter().any(|c| Arc::ptr_eq(c, s)));
        }
        let mut undone = w.active.cut(start_len).is_ok();
        for segment in created {
            undone &= segment.remove_files(&**self.files.disk()).is_ok();
        }
        if !undone {
            self.fail(
                w,
                "a failed write could not be undone; the log is refused until a restart recovers it",
            );
        }
    }

    /// Writes the index entries of the parts and makes their records visible to readers.
    fn publish_parts(&self, w: &mut Writer, parts: Vec<Part>, ts: i64) {
        let last = parts.len() - 1;
        for (i, part) in parts.into_iter().enumerate() {
            if !Arc::ptr_eq(&part.segment, &w.active) {
                // A roll: the segment before this one is full.
                let sealed = std::mem::replace(&mut w.active, part.segment.clone());
                w.unsynced.push(sealed);
                w.idx_len = 0;
            }
            if !part.entries.is_empty() {
                let mut idx = Vec::with_capacity(part.entries.len() * super::index::ENTRY_LEN);
                for entry in &part.entries {
                    entry.encode_into(&mut idx);
                }
                // The records are in the log, so failing the append now would lie to the
                // caller; a missing index entry only makes lookups scan a little further.
                match part.segment.write_index(&idx, w.idx_len) {
                    Ok(()) => w.idx_len += idx.len() as u64,
                    Err(error) => {
                        tracing::warn!(%error, "index write failed, continuing with a sparser index")
                    }
                }
            }
            let first_ts = (part.position == 0).then_some(ts);
            part.segment.publish(
                part.position + part.bytes.len() as u64,
                part.end_offset,
                first_ts,
                ts,
                &part.entries,
            );
            w.last_index_pos = part.last_index_pos;
            w.next_offset = part.end_offset;
            if i == last {
                // Keep the buffer for the next append.
                w.buf = part.bytes;
                w.buf.clear();
            }
        }
        w.last_ts = Some(ts);
        self.next_offset.store(w.next_offset, Ordering::Release);
    }

    /// Marks the log failed (once): appends and fsyncs are refused from now on.
    fn fail(&self, w: &mut Writer, reason: &str) {
        if w.failed.is_none() {
            tracing::error!(dir = %self.dir.display(), reason, "topic log failed");
            w.failed = Some(reason.into());
        }
    }

    /// Why the log refuses writes, if it does.
    pub fn failure(&self) -> Option<Arc<str>> {
        lock(&self.writer).failed.clone()
    }

    /// fsyncs (fdatasync) everything appended so far, including segments sealed by a roll
    /// since the last sync, their index files, and the directory if segments were created.
    /// The append lock is not held during the fsyncs. Safe to call concurrently: each call
    /// returns only once everything appended before it is durable.
    ///
    /// A failed fsync fails the log: what it was to make durable may be lost while later
    /// fsyncs succeed, so nothing after it may be called durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.sync_segments(true)
    }

    /// fsyncs only the segments sealed since the last sync (and the
    /// directory if segments were created), not the active one: what
    /// `fsync = "never"` does periodically, so sealed segments become
    /// durable and their files can be closed (see `LogConfig::sync_on_roll`).
    pub fn sync_sealed(&self) -> Result<(), StoreError> {
        self.sync_segments(false)
    }

    fn sync_segments(&self, with_active: bool) -> Result<(), StoreError> {
        let serial = lock(&self.sync_lock);
        if *serial {
            // Retired by a delete: the files were moved away to be removed.
            return Ok(());
        }
        let (sealed, active, dir_dirty) = {
            let mut w = lock(&self.writer);
            if let Some(reason) = &w.failed {
                return Err(StoreError::Failed(reason.to_string()));
            }
            (
                std::mem::take(&mut w.unsynced),
                Arc::clone(&w.active),
                std::mem::take(&mut w.dir_dirty),
            )
        };
        let active = with_active.then_some(active);
        let result = sealed
            .iter()
            .chain(active.as_ref())
            .try_for_each(|seg| seg.sync())
            .and_then(|()| if dir_dirty { self.sync_dir() } else { Ok(()) });
        match &result {
            Ok(()) => sealed.iter().for_each(|seg| seg.manage_files()),
            Err(e) => self.fail(&mut lock(&self.writer), &format!("fsync failed: {e}")),
        }
        result
    }

    /// Runs `move_away` (a delete renaming the log's directory) with no
    /// fsync in progress; if it succeeds, the log is retired: later fsyncs
    /// (a committer stopping, the interval flusher) return at once instead
    /// of failing on files that are no longer where they were.
    pub fn retire<E>(&self, move_away: impl FnOnce() -> Result<(), E>) -> Result<(), E> {
        let mut retired = lock(&self.sync_lock);
        move_away()?;
        *retired = true;
        Ok(())
    }

    pub(super) fn sync_dir(&self) -> Result<(), StoreError> {
        self.files
            .disk()
            .sync_dir(&self.dir)
            .map_err(|e| StoreError::io("fsync", &self.dir, e))
    }
}
