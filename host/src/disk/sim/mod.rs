//! [`SimDisk`]: an in-memory file system that models power loss, the way
//! ALICE and LazyFS do.
//!
//! It remembers what was made durable: a file's bytes by its fsync, a
//! directory's names by the directory's fsync. Every fsync is a
//! *durability point*; with [`SimDisk::record_points`] on, the state just
//! before each one is kept, and [`SimDisk::crash`] turns a kept state into
//! the disk a machine would find after losing power there: the durable
//! part, plus whatever subset of the unsynced work a [`Crash`] says: a
//! prefix of each file's unsynced writes, the last one torn or only
//! allocated (zero-filled), and renames and creates kept while the data
//! behind them is lost.
//!
//! It can also fail an fsync the way Linux does after a write-back error
//! ("fsyncgate"): the call returns EIO and the unsynced pages are dropped:
//! reads still see them, the disk never will.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Component, Path};
use std::sync::{Arc, Mutex, MutexGuard};

mod crash;

pub use crash::Crash;

use super::{DirEntry, Disk, DiskFile, OpenMode};
use crate::sync::lock;

const ROOT: u64 = 0;

/// A change to a file's bytes not yet known durable.
#[derive(Debug, Clone)]
pub(super) enum DataOp {
    Write { position: u64, bytes: Vec<u8> },
    SetLen(u64),
}

pub(super) fn apply(data: &mut Vec<u8>, op: &DataOp) {
    match op {
        DataOp::Write { position, bytes } => {
            let at = *position as usize;
            if data.len() < at + bytes.len() {
                data.resize(at + bytes.len(), 0);
            }
            data[at..at + bytes.len()].copy_from_slice(bytes);
        }
        DataOp::SetLen(len) => data.resize(*len as usize, 0),
    }
}

#[derive(Debug, Clone)]
pub(super) enum Node {
    File {
        /// What reads see.
        data: Vec<u8>,
        /// What the disk holds for sure.
        durable: Vec<u8>,
        /// Changes since the last fsync, in order.
        unsynced: Vec<DataOp>,
    },
    Dir {
        entries: BTreeMap<String, u64>,
        durable: BTreeMap<String, u64>,
    },
}

/// The whole file system.
#[derive(Debug, Clone, Default)]
pub(super) struct World {
    pub(super) nodes: HashMap<u64, Node>,
    pub(super) next_node: u64,
}

impl World {
    fn new() -> World {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT,
            Node::Dir {
                entries: BTreeMap::new(),
                durable: BTreeMap::new(),
            },
        );
        World {
            nodes,
            next_node: ROOT + 1,
        }
    }

    fn names(path: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for component in path.components() {
            match component {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(name) => out.push(
                    name.to_str()
                        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?
                        .to_owned(),
                ),
                _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
            }
        }
        Ok(out)
    }

    fn entries(&self, node: u64) -> io::Result<&BTreeMap<String, u64>> {
        match self.nodes.get(&node) {
            Some(Node::Dir { entries, .. }) => Ok(entries),
            Some(Node::File { .. }) => Err(io::Error::from(io::ErrorKind::NotADirectory)),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    fn entries_mut(&mut self, node: u64) -> io::Result<&mut BTreeMap<String, u64>> {
        match self.nodes.get_mut(&node) {
            Some(Node::Dir { entries, .. }) => Ok(entries),
            Some(Node::File { .. }) => Err(io::Error::from(io::ErrorKind::NotADirectory)),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    fn lookup(&self, path: &Path) -> io::Result<u64> {
        let mut node = ROOT;
        for name in World::names(path)? {
            node = *self
                .entries(node)?
                .get(&name)
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        }
        Ok(node)
    }

    /// The directory holding `path` and the last name of it.
    fn parent_of(&self, path: &Path) -> io::Result<(u64, String)> {
        let mut names = World::names(path)?;
        let last = names
            .pop()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut node = ROOT;
        for name in names {
            node = *self
                .entries(node)?
                .get(&name)
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        }
        self.entries(node)?;
        Ok((node, last))
    }

    fn add(&mut self, node: Node) -> u64 {
        let id = self.next_node;
        self.next_node += 1;
        self.nodes.insert(id, node);
        id
    }

    fn file_mut(&mut self, node: u64) -> io::Result<(&mut Vec<u8>, &mut Vec<DataOp>)> {
        match self.nodes.get_mut(&node) {
            Some(Node::File { data, unsynced, .. }) => Ok((data, unsynced)),
            Some(Node::Dir { .. }) => Err(io::Error::from(io::ErrorKind::IsADirectory)),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    fn change(&mut self, node: u64, op: DataOp) -> io::Result<()> {
        let (data, unsynced) = self.file_mut(node)?;
        apply(data, &op);
        unsynced.push(op);
        Ok(())
    }
}

/// A state kept at a durability point.
#[derive(Debug, Clone)]
pub struct Point {
    /// The sequence number of the point (see [`SimDisk::tick`]).
    pub seq: u64,
    world: World,
}

#[derive(Debug, Default)]
struct Shared {
    world: World,
    seq: u64,
    record: bool,
    points: Vec<Point>,
    /// Paths (substrings) whose next fsyncs fail, with how many are left.
    failing_syncs: Vec<(String, u32)>,
}

impl Shared {
    /// Notes a durability point (keeping the state before it if asked).
    fn point(&mut self) {
        self.seq += 1;
        if self.record {
            self.points.push(Point {
                seq: self.seq,
                world: self.world.clone(),
            });
        }
    }

    fn sync_fails(&mut self, path: &str) -> bool {
        match self
            .failing_syncs
            .iter_mut()
            .find(|(p, left)| *left > 0 && path.contains(p.as_str()))
        {
            Some((_, left)) => {
                *left -= 1;
                true
            }
            None => false,
        }
    }
}

/// An in-memory file system that models power loss. Cheap to clone;
/// clones are the same disk.
#[derive(Debug, Clone)]
pub struct SimDisk {
    shared: Arc<Mutex<Shared>>,
}

impl Default for SimDisk {
    fn default() -> Self {
        SimDisk::new()
    }
}

impl SimDisk {
    /// An empty disk (only the root directory, durable).
    pub fn new() -> SimDisk {
        SimDisk {
            shared: Arc::new(Mutex::new(Shared {
                world: World::new(),
                ..Shared::default()
            })),
        }
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        lock(&self.shared)
    }

    /// Starts or stops keeping the state before each durability point.
    pub fn record_points(&self, on: bool) {
        self.shared().record = on;
    }

    /// The states kept so far, oldest first.
    pub fn points(&self) -> Vec<Point> {
        self.shared().points.clone()
    }

    /// The current state as a point (a crash "now").
    pub fn now(&self) -> Point {
        let mut shared = self.shared();
        shared.seq += 1;
        Point {
            seq: shared.seq,
            world: shared.world.clone(),
        }
    }

    /// A sequence number ordered with the durability points: a test takes
    /// one when it sees an ack, and the ack was given before every point
    /// with a higher number.
    pub fn tick(&self) -> u64 {
        let mut shared = self.shared();
        shared.seq += 1;
        shared.seq
    }

    /// The next `times` fsyncs of files whose path contains `path_contains`
    /// fail with EIO and drop the unsynced pages, as Linux does.
    pub fn fail_syncs(&self, path_contains: &str, times: u32) {
        self.shared()
            .failing_syncs
            .push((path_contains.to_owned(), times));
    }

    /// The disk found after a power loss at `point`.
    pub fn crash(point: &Point, mut crash: Crash) -> SimDisk {
        SimDisk {
            shared: Arc::new(Mutex::new(Shared {
                world: point.world.after_crash(&mut crash),
                ..Shared::default()
            })),
        }
    }
}

/// An open file of a [`SimDisk`].
#[derive(Debug)]
struct SimFile {
    shared: Arc<Mutex<Shared>>,
    node: u64,
    path: String,
}

impl DiskFile for SimFile {
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        let mut shared = lock(&self.shared);
        let (data, _) = shared.world.file_mut(self.node)?;
        let at = (position as usize).min(data.len());
        let n = buf.len().min(data.len() - at);
        buf[..n].copy_from_slice(&data[at..at + n]);
        Ok(n)
    }

    fn write_at(&self, bytes: &[u8], position: u64) -> io::Result<()> {
        lock(&self.shared).world.change(
            self.node,
            DataOp::Write {
                position,
                bytes: bytes.to_vec(),
            },
        )
    }

    fn len(&self) -> io::Result<u64> {
        let mut shared = lock(&self.shared);
        Ok(shared.world.file_mut(self.node)?.0.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        lock(&self.shared)
            .world
            .change(self.node, DataOp::SetLen(len))
    }

    fn sync(&self) -> io::Result<()> {
        let mut shared = lock(&self.shared);
        shared.point();
        let fails = shared.sync_fails(&self.path);
        match shared.world.nodes.get_mut(&self.node) {
            Some(Node::File {
                durable, unsynced, ..
            }) => {
                let ops = std::mem::take(unsynced);
                if fails {
                    // The pages are marked clean without reaching the disk.
                    return Err(io::Error::from_raw_os_error(super::fault::EIO));
                }
                for op in &ops {
                    apply(durable, op);
                }
                Ok(())
            }
            _ => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }
}

impl Disk for SimDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>> {
        let mut shared = self.shared();
        let world = &mut shared.world;
        let (dir, name) = world.parent_of(path)?;
        let node = match (world.entries(dir)?.get(&name).copied(), mode) {
            (Some(_), OpenMode::CreateNew) => {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists))
            }
            (Some(node), OpenMode::Truncate) => {
                world.change(node, DataOp::SetLen(0))?;
                node
            }
            (Some(node), _) => {
                world.file_mut(node)?;
                node
            }
            (None, OpenMode::Existing) => return Err(io::Error::from(io::ErrorKind::NotFound)),
            (None, _) => {
                let node = world.add(Node::File {
                    data: Vec::new(),
                    durable: Vec::new(),
                    unsynced: Vec::new(),
                });
                world.entries_mut(dir)?.insert(name, node);
                node
            }
        };
        Ok(Arc::new(SimFile {
            shared: self.shared.clone(),
            node,
            path: path.to_string_lossy().into_owned(),
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut shared = self.shared();
        let world = &mut shared.world;
        let mut node = ROOT;
        for name in World::names(path)? {
            node = match world.entries(node)?.get(&name).copied() {
                Some(next) => {
                    world.entries(next)?;
                    next
                }
                None => {
                    let next = world.add(Node::Dir {
                        entries: BTreeMap::new(),
                        durable: BTreeMap::new(),
                    });
                    world.entries_mut(node)?.insert(name, next);
                    next
                }
            };
        }
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let shared = self.shared();
        let world = &shared.world;
        let node = world.lookup(path)?;
        Ok(world
            .entries(node)?
            .iter()
            .map(|(name, id)| DirEntry {
                name: name.clone(),
                is_dir: matches!(world.nodes.get(id), Some(Node::Dir { .. })),
            })
            .collect())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut shared = self.shared();
        let world = &mut shared.world;
        let (from_dir, from_name) = world.parent_of(from)?;
        let (to_dir, to_name) = world.parent_of(to)?;
        let node = world
            .entries_mut(from_dir)?
            .remove(&from_name)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        world.entries_mut(to_dir)?.insert(to_name, node);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut shared = self.shared();
        let world = &mut shared.world;
        let (dir, name) = world.parent_of(path)?;
        world
            .entries_mut(dir)?
            .remove(&name)
            .map(drop)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        // The subtree's nodes stay: a crash before the parent's fsync brings
        // the directory back with them.
        self.remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut shared = self.shared();
        shared.point();
        let node = shared.world.lookup(path)?;
        match shared.world.nodes.get_mut(&node) {
            Some(Node::Dir { entries, durable }) => {
                *durable = entries.clone();
                Ok(())
            }
            _ => Err(io::Error::from(io::ErrorKind::NotADirectory)),
        }
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        match self.shared().world.lookup(path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}
