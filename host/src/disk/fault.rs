//! [`FaultDisk`]: a [`Disk`] that fails the calls a test chooses, on top of
//! another one: EIO from a write or an fsync, ENOSPC, EMFILE from an open,
//! and short writes (part of the bytes written, then an error).
//!
//! Each rule matches one kind of call on paths containing a string, fires
//! a number of times (or until cleared), and counts its hits, so a test can
//! wait until the fault it set up has really happened.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{DirEntry, Disk, DiskFile, OpenMode, SharedDisk};
use crate::sync::lock;

/// A kind of call that a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Opening a file (any mode).
    Open,
    /// A positional write.
    Write,
    /// Cutting or extending a file.
    SetLen,
    /// A file's fsync.
    Sync,
    /// A directory's fsync.
    SyncDir,
    /// A rename.
    Rename,
    /// Creating a directory.
    CreateDir,
    /// Removing a file or directory.
    Remove,
    /// A positional read.
    Read,
}

/// What a matching call gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with this errno (e.g. `libc`'s EIO = 5, ENOSPC = 28,
    /// EMFILE = 24); nothing is done.
    Errno(i32),
    /// Writes the first `keep` bytes, then fails with EIO (writes only).
    ShortWrite {
        /// Bytes written before the error.
        keep: usize,
    },
}

/// EIO.
pub const EIO: i32 = 5;
/// ENOSPC.
pub const ENOSPC: i32 = 28;
/// EMFILE.
pub const EMFILE: i32 = 24;

#[derive(Debug)]
struct Rule {
    call: Call,
    path_contains: String,
    fault: Fault,
    /// Fires left; `None` until cleared.
    left: Option<u32>,
    hits: u64,
}

#[derive(Debug, Default)]
struct Rules {
    rules: Vec<Rule>,
    hits: u64,
}

impl Rules {
    /// The fault for a call on `path`, if a rule fires.
    fn fire(&mut self, call: Call, path: &Path) -> Option<Fault> {
        let path = path.to_string_lossy();
        let rule = self.rules.iter_mut().find(|r| {
            r.call == call && r.left != Some(0) && path.contains(r.path_contains.as_str())
        })?;
        if let Some(left) = rule.left.as_mut() {
            *left -= 1;
        }
        rule.hits += 1;
        self.hits += 1;
        Some(rule.fault)
    }
}

/// A disk that fails chosen calls. Cheap to clone; clones share the rules.
#[derive(Clone)]
pub struct FaultDisk {
    inner: SharedDisk,
    rules: Arc<Mutex<Rules>>,
}

impl fmt::Debug for FaultDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultDisk")
            .field("inner", &self.inner)
            .field("rules", &lock(&self.rules).rules)
            .finish()
    }
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl FaultDisk {
    /// No faults yet, over `inner`.
    pub fn new(inner: SharedDisk) -> FaultDisk {
        FaultDisk {
            inner,
            rules: Arc::default(),
        }
    }

    /// From now on, `call`s on paths containing `path_contains` get
    /// `fault`, `times` times (`None`: until [`FaultDisk::clear`]).
    pub fn inject(&self, call: Call, path_contains: &str, fault: Fault, times: Option<u32>) {
        lock(&self.rules).rules.push(Rule {
            call,
            path_contains: path_contains.to_owned(),
            fault,
            left: times,
            hits: 0,
        });
    }

    /// The disk is full: writes, extensions and creating files fail with
    /// ENOSPC until [`FaultDisk::clear`].
    pub fn fill(&self) {
        for call in [Call::Write, Call::SetLen, Call::CreateDir] {
            self.inject(call, "", Fault::Errno(ENOSPC), None);
        }
    }

    /// Removes every rule (the disk is healthy again).
    pub fn clear(&self) {
        lock(&self.rules).rules.clear();
    }

    /// Faults injected so far.
    pub fn hits(&self) -> u64 {
        lock(&self.rules).hits
    }

    fn check(&self, call: Call, path: &Path) -> io::Result<()> {
        match lock(&self.rules).fire(call, path) {
            None | Some(Fault::ShortWrite { .. }) => Ok(()),
            Some(Fault::Errno(code)) => Err(errno(code)),
        }
    }
}

/// A file of a [`FaultDisk`].
#[derive(Debug)]
struct FaultFile {
    inner: Arc<dyn DiskFile>,
    path: PathBuf,
    rules: Arc<Mutex<Rules>>,
}

impl FaultFile {
    fn fire(&self, call: Call) -> Option<Fault> {
        lock(&self.rules).fire(call, &self.path)
    }

    fn check(&self, call: Call) -> io::Result<()> {
        match self.fire(call) {
            None | Some(Fault::ShortWrite { .. }) => Ok(()),
            Some(Fault::Errno(code)) => Err(errno(code)),
        }
    }
}

impl DiskFile for FaultFile {
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        self.check(Call::Read)?;
        self.inner.read_at(buf, position)
    }

    fn write_at(&self, bytes: &[u8], position: u64) -> io::Result<()> {
        match self.fire(Call::Write) {
            None => self.inner.write_at(bytes, position),
            Some(Fault::Errno(code)) => Err(errno(code)),
            Some(Fault::ShortWrite { keep }) => {
                let keep = keep.min(bytes.len().saturating_sub(1));
                self.inner.write_at(&bytes[..keep], position)?;
                Err(errno(EIO))
            }
        }
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        // Cutting a file frees space: only growing it can fail for a full disk.
        if len > self.inner.len()? {
            self.check(Call::SetLen)?;
        }
        self.inner.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        self.check(Call::Sync)?;
        self.inner.sync()
    }
}

impl Disk for FaultDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>> {
        self.check(Call::Open, path)?;
        Ok(Arc::new(FaultFile {
            inner: self.inner.open(path, mode)?,
            path: path.to_path_buf(),
            rules: self.rules.clone(),
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.check(Call::CreateDir, path)?;
        self.inner.create_dir_all(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.inner.read_dir(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(Call::Rename, from)?;
        self.inner.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check(Call::Remove, path)?;
        self.inner.remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.check(Call::Remove, path)?;
        self.inner.remove_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.check(Call::SyncDir, path)?;
        self.inner.sync_dir(path)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
}
