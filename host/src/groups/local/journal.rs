//! [`Journal`]: a consumer group's state on disk: a snapshot plus an
//! append-only journal of [`Event`]s since the snapshot.
//!
//! Each journal entry is `u32 LE length | u32 LE crc32c | MessagePack
//! event`. Entries are written with one `write` each (a killed broker loses
//! none); they are fsynced with the broker's fsync policy by the group's
//! owner. On open a torn or corrupt tail is cut off, like the topic logs.
//! When the journal grows past a bound the state is snapshotted (written to
//! a temporary file, fsynced, renamed) and the journal emptied.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::state::{Event, GroupState};
use crate::store::StoreError;

/// Journal entries after which the state is snapshotted.
const COMPACT_AFTER_EVENTS: u64 = 50_000;
const SNAPSHOT: &str = "snapshot";
const JOURNAL: &str = "journal";

/// A group's snapshot and journal files.
pub(crate) struct Journal {
    dir: PathBuf,
    file: File,
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

/// Decodes entries until the end or the first bad one; returns the events
/// and the length of the good prefix.
fn decode_entries(bytes: &[u8]) -> (Vec<Event>, usize) {
    let mut events = Vec::new();
    let mut pos = 0;
    while bytes.len() - pos >= 8 {
        let len = u32::from_le_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
            as usize;
        let crc = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]);
        let Some(body) = bytes.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32c::crc32c(body) != crc {
            break;
        }
        let Ok(event) = rmp_serde::from_slice::<Event>(body) else {
            break;
        };
        events.push(event);
        pos += 8 + len;
    }
    (events, pos)
}

impl Journal {
    /// Opens (creating) the files in `dir` and recovers the state.
    pub fn open(dir: &Path) -> Result<(Journal, GroupState), StoreError> {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let mut state = GroupState::default();
        let snapshot_path = dir.join(SNAPSHOT);
        match std::fs::read(&snapshot_path) {
            Ok(bytes) => {
                state = rmp_serde::from_slice(&bytes).map_err(|_| StoreError::Corrupt {
                    path: snapshot_path.clone(),
                    position: 0,
                    reason: "group snapshot does not decode",
                })?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("read", &snapshot_path, e)),
        }
        let journal_path = dir.join(JOURNAL);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&journal_path)
            .map_err(io("open", &journal_path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(io("read", &journal_path))?;
        let (events, good) = decode_entries(&bytes);
        if good < bytes.len() {
            tracing::warn!(path = %journal_path.display(), cut = bytes.len() - good, "group journal had a torn or corrupt tail; cut it off");
            file.set_len(good as u64)
                .map_err(io("truncate", &journal_path))?;
        }
        for event in &events {
            state.apply(event);
        }
        Ok((
            Journal {
                dir: dir.to_owned(),
                file,
                events: events.len() as u64,
                buf: Vec::with_capacity(256),
            },
            state,
        ))
    }

    /// Appends events with one write.
    pub fn append(&mut self, events: &[Event]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        for event in events {
            encode_entry(event, &mut self.buf)?;
        }
        let path = self.dir.join(JOURNAL);
        self.file.write_all(&self.buf).map_err(io("write", &path))?;
        self.events += events.len() as u64;
        Ok(())
    }

    /// fsyncs the journal.
    pub fn sync(&self) -> Result<(), StoreError> {
        let path = self.dir.join(JOURNAL);
        self.file.sync_data().map_err(io("fsync", &path))
    }

    /// True when the journal will be long enough to be worth compacting
    /// once `more` events are appended.
    pub fn wants_compaction_after(&self, more: usize) -> bool {
        self.events + more as u64 >= COMPACT_AFTER_EVENTS
    }

    /// Writes `state` as the new snapshot and empties the journal.
    pub fn compact(&mut self, state: &GroupState) -> Result<(), StoreError> {
        let tmp = self.dir.join(format!("{SNAPSHOT}.tmp"));
        let bytes = rmp_serde::to_vec(state)
            .map_err(|e| StoreError::io("encode", &tmp, std::io::Error::other(e)))?;
        let mut file = File::create(&tmp).map_err(io("create", &tmp))?;
        file.write_all(&bytes).map_err(io("write", &tmp))?;
        file.sync_all().map_err(io("fsync", &tmp))?;
        let snapshot = self.dir.join(SNAPSHOT);
        std::fs::rename(&tmp, &snapshot).map_err(io("rename", &snapshot))?;
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        let path = self.dir.join(JOURNAL);
        self.file.set_len(0).map_err(io("truncate", &path))?;
        self.file.sync_all().map_err(io("fsync", &path))?;
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
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        j.append(&[ev(0), ev(1)]).unwrap();
        j.append(&[Event::Settled {
            topic: "t".into(),
            offset: 0,
        }])
        .unwrap();
        drop(j);
        let (_, state) = Journal::open(dir.path()).unwrap();
        assert_eq!(
            state.topics["t"].pending_offsets().collect::<Vec<_>>(),
            vec![1]
        );
    }

    #[test]
    fn torn_tail_is_cut_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        j.append(&[ev(0), ev(1)]).unwrap();
        drop(j);
        let path = dir.path().join(JOURNAL);
        let len = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        drop(f);
        let (mut j, state) = Journal::open(dir.path()).unwrap();
        assert_eq!(state.topics["t"].cursor, 1);
        j.append(&[ev(5)]).unwrap();
        drop(j);
        let (_, state) = Journal::open(dir.path()).unwrap();
        assert_eq!(state.topics["t"].cursor, 6);
    }

    #[test]
    fn compaction_keeps_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, mut state) = Journal::open(dir.path()).unwrap();
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
        let (_, recovered) = Journal::open(dir.path()).unwrap();
        assert_eq!(recovered, state);
        assert!(std::fs::metadata(dir.path().join(JOURNAL)).unwrap().len() < 40);
    }
}
