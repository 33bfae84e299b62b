//! The file system as the store and the group journals see it: one small
//! trait, [`Disk`], so that tests can put a disk that fails or loses power
//! where the real one stands.
//!
//! Every durable byte of sluice goes through it: topic segments and their
//! indexes, `topic.json`, group settings, journals and snapshots. Calls are
//! blocking; callers run them on the blocking pool.
//!
//! What durability means here is POSIX's: a file's bytes are durable once
//! [`DiskFile::sync`] returned, and a name (a create, rename or removal)
//! once [`Disk::sync_dir`] of its directory returned. [`replace_file`] is
//! the one way to write a small file durably and atomically.
//!
//! # Layout
//!
//! - [`real`]: the operating system's file system.
//! - [`fault`]: a wrapper that fails chosen calls (EIO, ENOSPC, EMFILE, short writes).
//! - [`sim`]: an in-memory file system that models power loss.

pub mod fault;
pub mod real;
pub mod sim;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use real::RealDisk;

/// How [`Disk::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// An existing file, for reading and writing.
    Existing,
    /// A new file; fails with `AlreadyExists` if the name is taken.
    CreateNew,
    /// Creates the file if missing, keeps its bytes otherwise.
    CreateOrOpen,
    /// Creates the file if missing and empties it.
    Truncate,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Its name within the directory.
    pub name: String,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// An open file: positional reads and writes, length, fsync.
pub trait DiskFile: Send + Sync + fmt::Debug {
    /// Reads at `position` into `buf`; returns the bytes read (0 at the end).
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize>;

    /// Writes all of `bytes` at `position`. On error any prefix of them may
    /// have been written (a short write).
    fn write_at(&self, bytes: &[u8], position: u64) -> io::Result<()>;

    /// The file's length.
    fn len(&self) -> io::Result<u64>;

    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Cuts or extends (with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Makes the file's bytes and length durable (fdatasync).
    fn sync(&self) -> io::Result<()>;

    /// The whole file.
    fn read_all(&self) -> io::Result<Vec<u8>> {
        let len = usize::try_from(self.len()?).map_err(io::Error::other)?;
        let mut buf = vec![0; len];
        let mut at = 0;
        while at < len {
            match self.read_at(&mut buf[at..], at as u64)? {
                0 => break,
                n => at += n,
            }
        }
        buf.truncate(at);
        Ok(buf)
    }
}

/// A file system.
pub trait Disk: Send + Sync + fmt::Debug + 'static {
    /// Opens `path` as `mode` says.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>>;

    /// Creates a directory and its missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// The entries of a directory, in no particular order.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>>;

    /// Renames a file or directory, replacing a file at `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;

    /// Makes the names in a directory durable (creates, renames, removals).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;

    /// Whether `path` names a file or directory.
    fn exists(&self, path: &Path) -> io::Result<bool>;

    /// The whole of a file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.open(path, OpenMode::Existing)?.read_all()
    }
}

/// A shared disk.
pub type SharedDisk = Arc<dyn Disk>;

/// The operating system's file system.
pub fn real() -> SharedDisk {
    Arc::new(RealDisk)
}

/// The directory holding `path` (`.` for a bare name).
pub fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Replaces `path` with `bytes` atomically and durably: a temporary file
/// beside it is written and fsynced, renamed over `path`, and the directory
/// fsynced. A crash leaves the old file or the new one, never a mix.
pub fn replace_file(disk: &dyn Disk, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let file = disk.open(&tmp, OpenMode::Truncate)?;
    file.write_at(bytes, 0)?;
    file.sync()?;
    drop(file);
    disk.rename(&tmp, path)?;
    disk.sync_dir(&parent(path))
}

/// Creates a directory and its missing parents, and makes each new name
/// durable by syncing the directory that holds it.
pub fn create_dir_durably(disk: &dyn Disk, path: &Path) -> io::Result<()> {
    // The first ancestor that exists: everything below it is new.
    let mut missing = Vec::new();
    let mut at = path.to_path_buf();
    while !disk.exists(&at)? {
        missing.push(at.clone());
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p.to_path_buf(),
            _ => break,
        }
    }
    disk.create_dir_all(path)?;
    for dir in missing.iter().rev() {
        disk.sync_dir(&parent(dir))?;
    }
    Ok(())
}

/// Whether an I/O error means the disk (or the user's quota) is full.
pub fn is_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests;
