//! [`Files`]: the disk a log writes to and the cache of open files of
//! sealed segments.
//!
//! A segment's files are [`Handle`]s. While a segment takes writes (and
//! until its last write is fsynced) its handles stay open: an fsync must go
//! through a descriptor that was open when the write was made, or Linux may
//! not report a write-back error. Once sealed and synced, its handles are
//! *managed*: opened on demand, and closed by the least-recently-used rule
//! when more than [`Files::new`]'s limit are open, so a store with many
//! segments holds a bounded number of descriptors.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::error::StoreError;
use crate::config::DEFAULT_MAX_OPEN_FILES;
use crate::disk::{self, DiskFile, OpenMode, SharedDisk};
use crate::sync::lock;

/// A disk and the cache of its open sealed-segment files. Cheap to clone.
#[derive(Clone)]
pub struct Files {
    disk: SharedDisk,
    cache: Arc<Cache>,
}

impl fmt::Debug for Files {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Files")
            .field("disk", &self.disk)
            .field("max_open", &self.cache.max_open)
            .finish()
    }
}

struct Cache {
    max_open: usize,
    next_id: AtomicU64,
    lru: Mutex<Lru>,
}

#[derive(Default)]
struct Lru {
    tick: u64,
    /// Managed handles with an open file: last use and the handle.
    open: HashMap<u64, (u64, Weak<Slot>)>,
}

impl Files {
    /// `disk`, keeping at most `max_open` files of sealed segments open.
    pub fn new(disk: SharedDisk, max_open: usize) -> Files {
        Files {
            disk,
            cache: Arc::new(Cache {
                max_open: max_open.max(1),
                next_id: AtomicU64::new(1),
                lru: Mutex::new(Lru::default()),
            }),
        }
    }

    /// The operating system's disk with the default limit.
    pub fn real() -> Files {
        Files::new(disk::real(), DEFAULT_MAX_OPEN_FILES)
    }

    /// The disk.
    pub fn disk(&self) -> &SharedDisk {
        &self.disk
    }

    /// Open files of sealed segments now.
    pub fn open_files(&self) -> usize {
        lock(&self.cache.lru).open.len()
    }

    /// Opens `path` as `mode` says, as a handle that stays open until it
    /// is [`Handle::manage`]d.
    pub(crate) fn open(&self, path: &Path, mode: OpenMode) -> Result<Handle, StoreError> {
        let file = self
            .disk
            .open(path, mode)
            .map_err(|e| StoreError::io("open", path, e))?;
        Ok(Handle(Arc::new(Slot {
            id: self.cache.next_id.fetch_add(1, Ordering::Relaxed),
            path: path.to_path_buf(),
            files: self.clone(),
            managed: AtomicBool::new(false),
            file: Mutex::new(Some(file)),
        })))
    }
}

struct Slot {
    id: u64,
    path: PathBuf,
    files: Files,
    managed: AtomicBool,
    file: Mutex<Option<Arc<dyn DiskFile>>>,
}

/// One file of a segment, open now or on demand.
#[derive(Clone)]
pub(crate) struct Handle(Arc<Slot>);

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Handle").field(&self.0.path).finish()
    }
}

impl Handle {
    /// The open file (opened again if the cache closed it).
    pub(crate) fn file(&self) -> Result<Arc<dyn DiskFile>, StoreError> {
        let slot = &self.0;
        let cache = &slot.files.cache;
        let mut file = lock(&slot.file);
        if let Some(open) = file.as_ref() {
            let open = open.clone();
            if slot.managed.load(Ordering::Relaxed) {
                let mut lru = lock(&cache.lru);
                lru.tick += 1;
                let tick = lru.tick;
                if let Some(entry) = lru.open.get_mut(&slot.id) {
                    entry.0 = tick;
                }
            }
            return Ok(open);
        }
        let open = slot
            .files
            .disk
            .open(&slot.path, OpenMode::Existing)
            .map_err(|e| StoreError::io("open", &slot.path, e))?;
        *file = Some(open.clone());
        drop(file);
        self.admit();
        Ok(open)
    }

    /// The segment is sealed and synced: its file may be closed when
    /// others are used more recently.
    pub(crate) fn manage(&self) {
        if !self.0.managed.swap(true, Ordering::Relaxed) && lock(&self.0.file).is_some() {
            self.admit();
        }
    }

    /// Counts this open, managed file in the cache, closing the least
    /// recently used ones past the limit.
    fn admit(&self) {
        let cache = &self.0.files.cache;
        let evicted: Vec<Arc<Slot>> = {
            let mut lru = lock(&cache.lru);
            lru.tick += 1;
            let tick = lru.tick;
            lru.open.insert(self.0.id, (tick, Arc::downgrade(&self.0)));
            let mut evicted = Vec::new();
            while lru.open.len() > cache.max_open {
                let Some((&oldest, _)) = lru.open.iter().min_by_key(|(_, (tick, _))| *tick) else {
                    break;
                };
                if let Some((_, weak)) = lru.open.remove(&oldest) {
                    evicted.extend(weak.upgrade());
                }
            }
            evicted
        };
        // Closed outside the cache's lock; a reader still holding one keeps
        // its descriptor until it is done.
        for slot in evicted {
            lock(&slot.file).take();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.files.cache.lru).open.remove(&self.id);
    }
}
