//! Plugin state on one machine: each namespace is a [`Journal`] (snapshot
//! plus append-only journal, the format consumer groups use) in
//! `<data_dir>/plugin-state/<plugin>/`.
//!
//! Each change is one write to the journal before the call returns, so a
//! broker killed right after keeps it. At the end of a batch that wrote,
//! the journal is fsynced as the broker's `[storage] fsync` says: always,
//! at the end of the first batch after `fsync_interval`, or never. Then
//! too, outside the plugin's deadline, the journal is compacted into a new
//! snapshot (expired entries left out) once it is larger than
//! [`COMPACT_AFTER_BYTES`] and twice what the namespace holds.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{now_ms, KvError, KvEvent, KvState, Opener, Sink};
use crate::config::FsyncPolicy;
use crate::disk::SharedDisk;
use crate::store::journal::{Journal, Journaled};

/// Journal bytes below which it is never compacted.
pub const COMPACT_AFTER_BYTES: u64 = 1024 * 1024;

/// Opens namespaces under a directory.
pub struct LocalOpener {
    disk: SharedDisk,
    dir: PathBuf,
    fsync: FsyncPolicy,
    fsync_interval: Duration,
}

impl LocalOpener {
    /// Namespaces in `dir` (`<data_dir>/plugin-state`), fsynced as `fsync`
    /// says.
    pub fn new(
        disk: SharedDisk,
        dir: &Path,
        fsync: FsyncPolicy,
        fsync_interval: Duration,
    ) -> LocalOpener {
        LocalOpener {
            disk,
            dir: dir.to_owned(),
            fsync,
            fsync_interval,
        }
    }
}

impl Opener for LocalOpener {
    fn open(&self, name: &str) -> Result<(KvState, Box<dyn Sink>), KvError> {
        let dir = self.dir.join(name);
        let (journal, mut state) = Journal::<KvState>::open(self.disk.clone(), &dir)
            .map_err(|e| KvError::Unavailable(e.to_string()))?;
        state.recount();
        let sink = JournalSink {
            journal,
            fsync: self.fsync,
            fsync_interval: self.fsync_interval,
            last_sync: Instant::now(),
        };
        Ok((state, Box::new(sink)))
    }
}

struct JournalSink {
    journal: Journal<KvState>,
    fsync: FsyncPolicy,
    fsync_interval: Duration,
    last_sync: Instant,
}

fn unavailable(e: impl std::fmt::Display) -> KvError {
    KvError::Unavailable(e.to_string())
}

impl Sink for JournalSink {
    fn write(&mut self, event: &KvEvent, _state: &KvState) -> Result<(), KvError> {
        self.journal
            .append(std::slice::from_ref(event))
            .map_err(unavailable)
    }

    fn flush(&mut self, state: &mut KvState) -> Result<(), KvError> {
        let len = self.journal.len_bytes();
        if len > COMPACT_AFTER_BYTES && len > 2 * state.bytes() {
            let mut live = KvState::default();
            let now = now_ms();
            for (key, entry) in &state.entries {
                if entry.live(now) {
                    live.apply(&KvEvent::Set {
                        key: key.clone(),
                        entry: entry.clone(),
                    });
                }
            }
            // Durable: the snapshot is fsynced and renamed into place.
            self.journal.compact(&live).map_err(unavailable)?;
            self.last_sync = Instant::now();
            return Ok(());
        }
        let due = match self.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval => self.last_sync.elapsed() >= self.fsync_interval,
            FsyncPolicy::Never => false,
        };
        if due {
            self.journal.sync().map_err(unavailable)?;
            self.last_sync = Instant::now();
        }
        Ok(())
    }
}
