//! [`ComponentCache`]: compiled components by the SHA-256 of their source,
//! in memory for this run and on disk (`<data>/plugin-cache/`) across runs,
//! so that switching back to a version seen before compiles nothing.
//!
//! A cache file is `MAGIC | sha256(artifact) | artifact`, named by the
//! source's digest and the engine's compatibility hash (wasmtime version and
//! settings). The artifact's digest is checked before wasmtime deserializes
//! it, so a torn or altered file is recompiled, never loaded. Files are
//! written to a temporary name and renamed.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::sync::lock;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

const MAGIC: &[u8; 8] = b"SLUICEC1";

/// Compiled components kept in memory (beyond this, the oldest go).
const MEMORY_ENTRIES: usize = 64;

/// Where a loaded component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    /// Compiled from the file.
    Compiled,
    /// Taken from the cache (memory or disk): no compile.
    Cached,
}

impl LoadSource {
    /// `compiled` or `cached`.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadSource::Compiled => "compiled",
            LoadSource::Cached => "cached",
        }
    }
}

/// The cache of one engine.
#[derive(Debug)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
    memory: Mutex<Vec<([u8; 32], Component)>>,
    engine_tag: String,
}

impl ComponentCache {
    /// A cache in memory, and in `dir` when given.
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> ComponentCache {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ComponentCache {
            dir,
            memory: Mutex::new(Vec::new()),
            engine_tag: format!("{:016x}", hasher.finish()),
        }
    }

    fn file(&self, digest: &[u8; 32]) -> Option<PathBuf> {
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{hex}-{}.cwasm", self.engine_tag)))
    }

    /// The component for `bytes` (whose SHA-256 is `digest`): from the
    /// cache, or compiled with `compile` and then cached.
    pub fn get_or_compile(
        &self,
        engine: &Engine,
        digest: &[u8; 32],
        compile: impl FnOnce() -> wasmtime::Result<Component>,
    ) -> wasmtime::Result<(Component, LoadSource)> {
        if let Some(found) = self.in_memory(digest) {
            return Ok((found, LoadSource::Cached));
        }
        if let Some(path) = self.file(digest) {
            if let Some(found) = read_artifact(engine, &path) {
                self.remember(digest, &found);
                return Ok((found, LoadSource::Cached));
            }
        }
        let component = compile()?;
        self.remember(digest, &component);
        if let Some(path) = self.file(digest) {
            if let Err(e) = write_artifact(&component, &path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the compiled-plugin cache; the next load of this version compiles again");
            }
        }
        Ok((component, LoadSource::Compiled))
    }

    fn in_memory(&self, digest: &[u8; 32]) -> Option<Component> {
        let memory = lock(&self.memory);
        memory
            .iter()
            .find(|(d, _)| d == digest)
            .map(|(_, c)| c.clone())
    }

    fn remember(&self, digest: &[u8; 32], component: &Component) {
        let mut memory = lock(&self.memory);
        if memory.iter().any(|(d, _)| d == digest) {
            return;
        }
        if memory.len() >= MEMORY_ENTRIES {
            memory.remove(0);
        }
        memory.push((*digest, component.clone()));
    }
}

/// A cached artifact, if the file exists, is whole and fits this engine.
fn read_artifact(engine: &Engine, path: &Path) -> Option<Component> {
    let bytes = std::fs::read(path).ok()?;
    let header = MAGIC.len() + 32;
    if bytes.len() < header || &bytes[..MAGIC.len()] != MAGIC {
        tracing::warn!(path = %path.display(), "compiled-plugin cache file is not one of ours; recompiling");
        return None;
    }
    let (sum, artifact) = bytes[MAGIC.len()..].split_at(32);
    if Sha256::digest(artifact).as_slice() != sum {
        tracing::warn!(path = %path.display(), "compiled-plugin cache file is corrupt; recompiling");
        return None;
    }
    // SAFETY: wasmtime requires that deserialized bytes come from
    // `Component::serialize` of a compatible engine and were not altered.
    // This file is ours (written by `write_artifact` into the broker's own
    // locked data directory), its checksum over the artifact matches, and
    // wasmtime itself checks the engine's version and settings.
    match unsafe { Component::deserialize(engine, artifact) } {
        Ok(component) => Some(component),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "compiled-plugin cache file does not fit this engine; recompiling");
            None
        }
    }
}

/// Why a compiled component was not cached on disk (logged; the cause is
/// in the message because nothing chains it).
#[derive(Debug, thiserror::Error)]
enum CacheWriteError {
    /// wasmtime could not serialize the compiled component (its error is
    /// not a `std::error::Error`, so it is kept as text).
    #[error("cannot serialize the component: {0}")]
    Serialize(String),
    /// A file system operation on the cache failed.
    #[error("cannot {op} {path}: {error}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

fn write_artifact(component: &Component, path: &Path) -> Result<(), CacheWriteError> {
    let io = |op, path: &Path| {
        let path = path.to_owned();
        move |error| CacheWriteError::Io { op, path, error }
    };
    let artifact = component
        .serialize()
        .map_err(|e| CacheWriteError::Serialize(format!("{e:#}")))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    }
    let mut bytes = Vec::with_capacity(MAGIC.len() + 32 + artifact.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&Sha256::digest(&artifact));
    bytes.extend_from_slice(&artifact);
    let tmp = path.with_extension("cwasm.tmp");
    std::fs::write(&tmp, &bytes).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("rename", &tmp))?;
    Ok(())
}
