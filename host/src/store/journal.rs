//! [`Journal`]: a piece of state on disk as a snapshot plus an append-only
//! journal of the events since the snapshot: consumer groups' cursors and
//! plugins' key-value state. The state says how an event changes it
//! ([`Journaled`]).
//!
//! Each journal entry is `u32 LE length | u32 LE crc32c | MessagePack
//! event`. Entries are written with one positional write per batch (a
//! killed broker loses none); they are fsynced with the broker's fsync
//! policy by the group's owner. A write that fails is cut back, so no
//! stray bytes stay behind, and reported.
//!
//! On open, a torn or corrupt tail is cut off, like the topic logs. A bad
//! entry in the middle (a power loss can keep a later unsynced write and
//! lose an earlier one) is skipped: the scan looks for the next entry that
//! checks out and goes on from there, so one torn entry does not take
//! every later ack with it.
//!
//! When the journal grows past a bound the state is snapshotted and the
//! journal emptied. The snapshot is `SLGS | u8 version | u32 LE crc32c |
//! MessagePack state`, replaced atomically (temporary file, fsync, rename,
//! directory fsync). A snapshot that fails its check is an error naming
//! the file: that state (a group, a plugin's namespace) is not opened, the
//! rest of the broker is.
//! Snapshots written before the header existed are read as they are.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::StoreError;
use crate::disk::{self, DiskFile, OpenMode, SharedDisk};

/// State kept by a [`Journal`]: a snapshot of it, and the events that
/// change it.
pub trait Journaled: Default + Serialize + DeserializeOwned {
    /// One change.
    type Event: Serialize + DeserializeOwned;

    /// What the state is, for messages (`group`, `plugin state`).
    const WHAT: &'static str;

    /// Applies one event.
    fn apply(&mut self, event: &Self::Event);
}

/// Journal entries after which the state is snapshotted (few in tests, so
/// that they snapshot too).
#[cfg(not(test))]
const COMPACT_AFTER_EVENTS: u64 = 50_000;
#[cfg(test)]
const COMPACT_AFTER_EVENTS: u64 = 32;
pub(crate) const SNAPSHOT: &str = "snapshot";
pub(crate) const JOURNAL: &str = "journal";
/// Start of a checksummed snapshot.
const SNAPSHOT_MAGIC: &[u8; 4] = b"SLGS";
const SNAPSHOT_VERSION: u8 = 1;
/// A journal entry longer than this is garbage, not an event.
const MAX_ENTRY: usize = 16 * 1024 * 1024;

/// The snapshot and journal files of one state.
pub(crate) struct Journal<S> {
    disk: SharedDisk,
    dir: PathBuf,
    path: PathBuf,
    file: Arc<dyn DiskFile>,
    /// Bytes of whole entries in the file.
    len: u64,
    events: u64,
    buf: Vec<u8>,
    state: std::marker::PhantomData<fn() -> S>,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |e| StoreError::io(op, path, e)
}

pub(crate) fn encode_entry<E: Serialize>(event: &E, buf: &mut Vec<u8>) -> Result<(), StoreError> {
    let body = rmp_serde::to_vec(event)
        .map_err(|e| StoreError::io("encode", "journal event", std::io::Error::other(e)))?;
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    buf.extend_from_slice(&body);
    Ok(())
}

/// The entry at `pos`, if a whole, valid one starts there; with its length.
fn entry_at<E: DeserializeOwned>(bytes: &[u8], pos: usize) -> Option<(E, usize)> {
    let header = bytes.get(pos..pos + 8)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 || len > MAX_ENTRY {
        return None;
    }
    let body = bytes.get(pos + 8..pos + 8 + len)?;
    if crc32c::crc32c(body) != crc {
        return None;
    }
    let event = rmp_serde::from_slice::<E>(body).ok()?;
    Some((event, 8 + len))
}

/// What a journal's bytes hold.
#[derive(Debug, PartialEq)]
pub(crate) struct Decoded<E> {
    pub events: Vec<E>,
    /// Length of the part up to the end of the last good entry.
    pub good: usize,
    /// Bytes skipped between good entries.
    pub skipped: usize,
}

/// Decodes entries, skipping damaged ones in the middle (see the module docs).
pub(crate) fn decode_entries<E: DeserializeOwned>(bytes: &[u8]) -> Decoded<E> {
    let mut out = Decoded {
        events: Vec::new(),
        good: 0,
        skipped: 0,
    };
    let mut pos = 0;
    while pos < bytes.len() {
        if let Some((event, len)) = entry_at(bytes, pos) {
            out.events.push(event);
            pos += len;
            out.good = pos;
            continue;
        }
        // Not an entry here: look for the next one that checks out.
        match (pos + 1..bytes.len()).find(|&p| entry_at::<E>(bytes, p).is_some()) {
            Some(next) => {
                out.skipped += next - pos;
                pos = next;
            }
            None => break,
        }
    }
    out
}

/// Decodes a snapshot file (checksummed, or from before checksums).
pub(crate) fn decode_snapshot<S: DeserializeOwned>(bytes: &[u8]) -> Result<S, &'static str> {
    let body = match bytes.strip_prefix(SNAPSHOT_MAGIC) {
        Some(rest) => {
            let [version, c0, c1, c2, c3, body @ ..] = rest else {
                return Err("snapshot is truncated");
            };
            if *version != SNAPSHOT_VERSION {
                return Err("snapshot has an unknown version");
            }
            if crc32c::crc32c(body) != u32::from_le_bytes([*c0, *c1, *c2, *c3]) {
                return Err("snapshot fails its checksum");
            }
            body
        }
        None => bytes,
    };
    rmp_serde::from_slice(body).map_err(|_| "snapshot does not decode")
}

pub(crate) fn encode_snapshot<S: Serialize>(
    state: &S,
) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let body = rmp_serde::to_vec(state)?;
    let mut out = Vec::with_capacity(body.len() + 9);
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.push(SNAPSHOT_VERSION);
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

impl<S: Journaled> Journal<S> {
    /// Opens (creating, durably) the files in `dir` and recovers the state.
    pub fn open(disk: SharedDisk, dir: &Path) -> Result<(Journal<S>, S), StoreError> {
        disk::create_dir_durably(&*disk, dir).map_err(io("create", dir))?;
        let mut state = S::default();
        let snapshot_path = dir.join(SNAPSHOT);
        match disk.read(&snapshot_path) {
            Ok(bytes) => {
                state = decode_snapshot(&bytes).map_err(|reason| StoreError::Corrupt {
                    path: snapshot_path.clone(),
                    position: 0,
                    reason,
                })?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("read", &snapshot_path, e)),
        }
        let path = dir.join(JOURNAL);
        let existed = disk.exists(&path).map_err(io("stat", &path))?;
        let file = disk
            .open(&path, OpenMode::CreateOrOpen)
            .map_err(io("open", &path))?;
        if !existed {
            disk.sync_dir(dir).map_err(io("fsync", dir))?;
        }
        let bytes = file.read_all().map_err(io("read", &path))?;
        let decoded = decode_entries::<S::Event>(&bytes);
        if decoded.skipped > 0 {
            tracing::warn!(path = %path.display(), what = S::WHAT, skipped = decoded.skipped, "journal had damaged entries in the middle; skipped them and kept the entries after");
        }
        if decoded.good < bytes.len() {
            tracing::warn!(path = %path.display(), what = S::WHAT, cut = bytes.len() - decoded.good, "journal had a torn or corrupt tail; cut it off");
            file.set_len(decoded.good as u64)
                .and_then(|()| file.sync())
                .map_err(io("truncate", &path))?;
        }
        for event in &decoded.events {
            state.apply(event);
        }
        Ok((
            Journal {
                disk,
                dir: dir.to_owned(),
                path,
                file,
                len: decoded.good as u64,
                events: decoded.events.len() as u64,
                buf: Vec::with_capacity(256),
                state: std::marker::PhantomData,
            },
            state,
        ))
    }

    /// Appends events with one write. A failed write is cut back (and if
    /// even that fails, the error says so: the caller stops using the
    /// journal either way).
    pub fn append(&mut self, events: &[S::Event]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        for event in events {
            encode_entry(event, &mut self.buf)?;
        }
        if let Err(e) = self.file.write_at(&self.buf, self.len) {
            let _ = self.file.set_len(self.len);
            return Err(StoreError::io("write", &self.path, e));
        }
        self.len += self.buf.len() as u64;
        self.events += events.len() as u64;
        Ok(())
    }

    /// fsyncs the journal.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.file.sync().map_err(io("fsync", &self.path))
    }

    /// True when the journal will be long enough to be worth compacting
    /// once `more` events are appended.
    pub fn wants_compaction_after(&self, more: usize) -> bool {
        self.events + more as u64 >= COMPACT_AFTER_EVENTS
    }

    /// Bytes of the journal (what a compaction would empty).
    pub fn len_bytes(&self) -> u64 {
        self.len
    }

    /// Writes `state` as the new snapshot and empties the journal.
    pub fn compact(&mut self, state: &S) -> Result<(), StoreError> {
        let snapshot = self.dir.join(SNAPSHOT);
        let bytes = encode_snapshot(state)
            .map_err(|e| StoreError::io("encode", &snapshot, std::io::Error::other(e)))?;
        disk::replace_file(&*self.disk, &snapshot, &bytes).map_err(io("write", &snapshot))?;
        self.file
            .set_len(0)
            .and_then(|()| self.file.sync())
            .map_err(io("truncate", &self.path))?;
        self.len = 0;
        self.events = 0;
        Ok(())
    }
}
