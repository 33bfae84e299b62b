//! [`Journal`]: a consumer group's state on disk: a snapshot plus an
//! append-only journal of [`Event`]s since the snapshot.
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
//! the file: the group is not started, the rest of the broker is.
//! Snapshots written before the header existed are read as they are.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::state::{Event, GroupState};
use crate::disk::{self, DiskFile, OpenMode, SharedDisk};
use crate::store::StoreError;

/// Journal entries after which the state is snapshotted (few in tests, so
/// that they snapshot too).
#[cfg(not(test))]
const COMPACT_AFTER_EVENTS: u64 = 50_000;
#[cfg(test)]
const COMPACT_AFTER_EVENTS: u64 = 32;
const SNAPSHOT: &str = "snapshot";
const JOURNAL: &str = "journal";
/// Start of a checksummed snapshot.
const SNAPSHOT_MAGIC: &[u8; 4] = b"SLGS";
const SNAPSHOT_VERSION: u8 = 1;
/// A journal entry longer than this is garbage, not an event.
const MAX_ENTRY: usize = 16 * 1024 * 1024;

/// A group's snapshot and journal files.
pub(crate) struct Journal {
    disk: SharedDisk,
    dir: PathBuf,
    path: PathBuf,
    file: Arc<dyn DiskFile>,
    /// Bytes of whole entries in the file.
    len: u64,
    events: u64,
    buf: Vec<u8>,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |e| StoreError::io(op, path, e)
}

fn encode_entry(event: &Event, buf: &mut Vec<u8>) -> Result<(), StoreError> {
    let body = rmp_serde::to_vec(event)
        .map_err(|e| StoreError::io("encode", "group event", std::io::Error::other(e)))?;
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    buf.extend_from_slice(&body);
    Ok(())
}

/// The entry at `pos`, if a whole, valid one starts there; with its length.
fn entry_at(bytes: &[u8], pos: usize) -> Option<(Event, usize)> {
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
    let event = rmp_serde::from_slice::<Event>(body).ok()?;
    Some((event, 8 + len))
}

/// What a journal's bytes hold.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Decoded {
    pub events: Vec<Event>,
    /// Length of the part up to the end of the last good entry.
    pub good: usize,
    /// Bytes skipped between good entries.
    pub skipped: usize,
}

/// Decodes entries, skipping damaged ones in the middle (see the module docs).
pub(super) fn decode_entries(bytes: &[u8]) -> Decoded {
    let mut out = Decoded::default();
    let mut pos = 0;
    while pos < bytes.len() {
        if let Some((event, len)) = entry_at(bytes, pos) {
            out.events.push(event);
            pos += len;
            out.good = pos;
            continue;
        }
        // Not an entry here: look for the next one that checks out.
        match (pos + 1..bytes.len()).find(|&p| entry_at(bytes, p).is_some()) {
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
pub(super) fn decode_snapshot(bytes: &[u8]) -> Result<GroupState, &'static str> {
    let body = match bytes.strip_prefix(SNAPSHOT_MAGIC) {
        Some(rest) => {
            let [version, c0, c1, c2, c3, body @ ..] = rest else {
                return Err("group snapshot is truncated");
            };
            if *version != SNAPSHOT_VERSION {
                return Err("group snapshot has an unknown version");
            }
            if crc32c::crc32c(body) != u32::from_le_bytes([*c0, *c1, *c2, *c3]) {
                return Err("group snapshot fails its checksum");
            }
            body
        }
        None => bytes,
    };
    rmp_serde::from_slice(body).map_err(|_| "group snapshot does not decode")
}

fn encode_snapshot(state: &GroupState) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let body = rmp_serde::to_vec(state)?;
    let mut out = Vec::with_capacity(body.len() + 9);
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.push(SNAPSHOT_VERSION);
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

impl Journal {
    /// Opens (creating, durably) the files in `dir` and recovers the state.
    pub fn open(disk: SharedDisk, dir: &Path) -> Result<(Journal, GroupState), StoreError> {
        disk::create_dir_durably(&*disk, dir).map_err(io("create", dir))?;
        let mut state = GroupState::default();
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
        let decoded = decode_entries(&bytes);
        if decoded.skipped > 0 {
            tracing::warn!(path = %path.display(), skipped = decoded.skipped, "group journal had damaged entries in the middle; skipped them and kept the entries after");
        }
        if decoded.good < bytes.len() {
            tracing::warn!(path = %path.display(), cut = bytes.len() - decoded.good, "group journal had a torn or corrupt tail; cut it off");
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
            },
            state,
        ))
    }

    /// Appends events with one write. A failed write is cut back (and if
    /// even that fails, the error says so: the caller stops using the
    /// journal either way).
    pub fn append(&mut self, events: &[Event]) -> Result<(), StoreError> {
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

    /// Writes `state` as the new snapshot and empties the journal.
    pub fn compact(&mut self, state: &GroupState) -> Result<(), StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(offset: u64) -> Event {
        Event::Delivered {
            topic: "t".into(),
            offset,
            attempt: 1,
        }
    }

    #[test]
    fn events_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(disk::real(), dir.path()).unwrap();
        j.append(&[ev(0), ev(1)]).unwrap();
        j.append(&[Event::Settled {
            topic: "t".into(),
            offset: 0,
        }])
        .unwrap();
        drop(j);
        let (_, state) = Journal::open(disk::real(), dir.path()).unwrap();
        assert_eq!(
            state.topics["t"].pending_offsets().collect::<Vec<_>>(),
            vec![1]
        );
    }

    #[test]
    fn torn_tail_is_cut_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(disk::real(), dir.path()).unwrap();
        j.append(&[ev(0), ev(1)]).unwrap();
        drop(j);
        let path = dir.path().join(JOURNAL);
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        drop(f);
        let (mut j, state) = Journal::open(disk::real(), dir.path()).unwrap();
        assert_eq!(state.topics["t"].cursor, 1);
        j.append(&[ev(5)]).unwrap();
        drop(j);
        let (_, state) = Journal::open(disk::real(), dir.path()).unwrap();
        assert_eq!(state.topics["t"].cursor, 6);
    }

    #[test]
    fn compaction_keeps_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, mut state) = Journal::open(disk::real(), dir.path()).unwrap();
        let events: Vec<_> = (0..10).map(ev).collect();
        for e in &events {
            state.apply(e);
        }
        j.append(&events).unwrap();
        j.compact(&state).unwrap();
        let settle = Event::Settled {
            topic: "t".into(),
            offset: 3,
        };
        state.apply(&settle);
        j.append(&[settle]).unwrap();
        drop(j);
        let (_, recovered) = Journal::open(disk::real(), dir.path()).unwrap();
        assert_eq!(recovered, state);
        assert!(std::fs::metadata(dir.path().join(JOURNAL)).unwrap().len() < 40);
    }

    #[test]
    fn a_damaged_entry_in_the_middle_loses_only_itself() {
        let mut bytes = Vec::new();
        for o in 0..6 {
            encode_entry(&ev(o), &mut bytes).unwrap();
        }
        let one = bytes.len() / 6;
        // The third entry torn: zeros, as a lost page leaves it.
        for b in &mut bytes[2 * one..3 * one] {
            *b = 0;
        }
        let decoded = decode_entries(&bytes);
        let offsets: Vec<u64> = decoded
            .events
            .iter()
            .map(|e| match e {
                Event::Delivered { offset, .. } => *offset,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(offsets, [0, 1, 3, 4, 5]);
        assert_eq!((decoded.good, decoded.skipped), (bytes.len(), one));
        // Garbage at the end is a tail to cut, not entries.
        bytes.extend_from_slice(&[7; 13]);
        let decoded = decode_entries(&bytes);
        assert_eq!(decoded.events.len(), 5);
        assert_eq!(decoded.good, bytes.len() - 13);
    }

    #[test]
    fn snapshots_are_checked_and_old_ones_still_read() {
        let mut state = GroupState::default();
        for o in 0..3 {
            state.apply(&ev(o));
        }
        let mut bytes = encode_snapshot(&state).unwrap();
        assert_eq!(decode_snapshot(&bytes), Ok(state.clone()));
        // From before the header.
        assert_eq!(
            decode_snapshot(&rmp_serde::to_vec(&state).unwrap()),
            Ok(state.clone())
        );
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            decode_snapshot(&bytes),
            Err("group snapshot fails its checksum")
        );
        assert!(decode_snapshot(&bytes[..7]).is_err());
        assert!(decode_snapshot(b"garbage").is_err());
    }

    #[test]
    fn a_bad_snapshot_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, mut state) = Journal::open(disk::real(), dir.path()).unwrap();
        state.apply(&ev(0));
        j.append(&[ev(0)]).unwrap();
        j.compact(&state).unwrap();
        drop(j);
        let path = dir.path().join(SNAPSHOT);
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2 + 5;
        bytes[mid] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
        let error = Journal::open(disk::real(), dir.path())
            .err()
            .expect("refused");
        assert!(error.to_string().contains("snapshot"), "{error}");
    }

    #[test]
    fn a_failed_write_leaves_no_bytes_and_reports() {
        use crate::disk::fault::{Call, Fault, FaultDisk};
        let dir = tempfile::tempdir().unwrap();
        let faults = FaultDisk::new(disk::real());
        let (mut j, _) = Journal::open(Arc::new(faults.clone()), dir.path()).unwrap();
        j.append(&[ev(0)]).unwrap();
        faults.inject(Call::Write, JOURNAL, Fault::ShortWrite { keep: 5 }, Some(1));
        assert!(j.append(&[ev(1), ev(2)]).is_err());
        j.append(&[ev(3)]).unwrap();
        drop(j);
        let (_, state) = Journal::open(disk::real(), dir.path()).unwrap();
        assert_eq!(
            state.topics["t"].pending_offsets().collect::<Vec<_>>(),
            vec![0, 1, 2, 3],
            "0 and 3 delivered; 1 and 2 below the cursor stay pending"
        );
        assert_eq!(state.attempts("t", 1), 0, "the failed write left nothing");
    }
}
