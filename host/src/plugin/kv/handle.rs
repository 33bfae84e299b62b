//! What a plugin instance's state calls go to: its namespace, a shadow
//! version's overlay, or the error that kept the namespace from opening.

use std::sync::Arc;

use super::{KvError, Namespace, Overlay};

/// Where one plugin instance's state calls go.
#[derive(Debug, Clone)]
pub enum KvHandle {
    /// The plugin's namespace.
    Live(Arc<Namespace>),
    /// A shadow version's throwaway overlay over it.
    Shadow(Arc<Overlay>),
    /// The namespace could not be opened: every call says why.
    Broken(KvError),
}

impl KvHandle {
    /// `get`.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        match self {
            KvHandle::Live(ns) => ns.get(key),
            KvHandle::Shadow(o) => o.get(key),
            KvHandle::Broken(e) => Err(e.clone()),
        }
    }

    /// `set`.
    pub fn set(&self, key: &str, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<(), KvError> {
        match self {
            KvHandle::Live(ns) => ns.set(key, value, ttl_ms),
            KvHandle::Shadow(o) => o.set(key, value, ttl_ms),
            KvHandle::Broken(e) => Err(e.clone()),
        }
    }

    /// `delete`.
    pub fn delete(&self, key: &str) -> Result<bool, KvError> {
        match self {
            KvHandle::Live(ns) => ns.delete(key),
            KvHandle::Shadow(o) => o.delete(key),
            KvHandle::Broken(e) => Err(e.clone()),
        }
    }

    /// `incr`.
    pub fn incr(&self, key: &str, delta: i64, ttl_ms: Option<u64>) -> Result<i64, KvError> {
        match self {
            KvHandle::Live(ns) => ns.incr(key, delta, ttl_ms),
            KvHandle::Shadow(o) => o.incr(key, delta, ttl_ms),
            KvHandle::Broken(e) => Err(e.clone()),
        }
    }

    /// End of a batch (see [`Namespace::flush`]); an overlay keeps nothing.
    pub fn flush(&self) -> Result<(), KvError> {
        match self {
            KvHandle::Live(ns) => ns.flush(),
            KvHandle::Shadow(_) | KvHandle::Broken(_) => Ok(()),
        }
    }
}
