//! Plugins' key-value state (the WIT `state` interface): one
//! [`Namespace`] per plugin name, shared by all its versions and
//! instances, kept across reloads and restarts.
//!
//! A namespace is a map in memory in front of a [`Sink`] that makes each
//! change durable before the call returns: the store's journal in the
//! data directory on one machine ([`local`]), the cluster's key-value
//! bucket in cluster mode. Calls on one namespace are serialised by its
//! lock, so each is atomic; the sink's end-of-batch [`Sink::flush`] (an
//! fsync under the broker's policy) runs once per batch that wrote.
//!
//! A version in shadow mode gets an [`Overlay`]: reads fall through to the
//! live namespace, writes stay in the overlay's memory and vanish with it.
//!
//! Limits (`[plugins] state_max_key_bytes`, `state_max_value_bytes`,
//! `state_max_bytes`) are checked before anything changes; a call past
//! them gets an error naming the limit and the broker goes on.

pub mod cluster;
mod handle;
pub mod local;
mod overlay;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use handle::KvHandle;
pub use overlay::Overlay;

use crate::store::journal::Journaled;
use crate::sync::lock;

/// Bytes counted per entry beyond its key and value (the map's own cost).
pub const ENTRY_OVERHEAD: u64 = 32;

pub use crate::config::StateLimits as Limits;

/// Why a state call failed. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// Empty, or longer than the limit.
    #[error("state key of {len} bytes: keys are 1 to {max} bytes ([plugins] state_max_key_bytes)")]
    KeyTooLong {
        /// The key's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Larger than the limit.
    #[error("state value of {len} bytes: values are at most {max} bytes ([plugins] state_max_value_bytes)")]
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The namespace would be over its quota.
    #[error("the plugin's state would hold {would} bytes, over its quota of {max} ([plugins] state_max_bytes)")]
    QuotaExceeded {
        /// What it would hold.
        would: u64,
        /// The quota.
        max: u64,
    },
    /// `incr` on something that is not a decimal i64, or an overflow.
    #[error("the value is not a decimal 64-bit integer, or the sum overflows")]
    NotANumber,
    /// The store failed; nothing was changed.
    #[error("plugin state unavailable: {0}")]
    Unavailable(String),
}

impl KvError {
    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            KvError::KeyTooLong { .. } => "key_too_long",
            KvError::ValueTooLarge { .. } => "value_too_large",
            KvError::QuotaExceeded { .. } => "quota_exceeded",
            KvError::NotANumber => "not_a_number",
            KvError::Unavailable(_) => "unavailable",
        }
    }
}

/// One value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The bytes.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// When it expires (ms since the Unix epoch), if ever.
    pub expires_ms: Option<i64>,
}

impl Entry {
    fn live(&self, now_ms: i64) -> bool {
        self.expires_ms.is_none_or(|at| at > now_ms)
    }
}

/// What a key costs against the quota.
pub fn entry_size(key: &str, value: &[u8]) -> u64 {
    key.len() as u64 + value.len() as u64 + ENTRY_OVERHEAD
}

/// One change, as journaled and as sent to a cluster's bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvEvent {
    /// `key` now holds this entry.
    Set {
        /// The key.
        key: String,
        /// The value and its expiry.
        entry: Entry,
    },
    /// `key` is gone.
    Delete {
        /// The key.
        key: String,
    },
}

/// A namespace's entries.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct KvState {
    entries: HashMap<String, Entry>,
    /// Sum of [`entry_size`] (recounted after a load).
    #[serde(skip)]
    bytes: u64,
}

impl Journaled for KvState {
    type Event = KvEvent;
    const WHAT: &'static str = "plugin state";

    fn apply(&mut self, event: &KvEvent) {
        match event {
            KvEvent::Set { key, entry } => {
                self.bytes += entry_size(key, &entry.value);
                if let Some(old) = self.entries.insert(key.clone(), entry.clone()) {
                    self.bytes -= entry_size(key, &old.value);
                }
            }
            KvEvent::Delete { key } => {
                if let Some(old) = self.entries.remove(key) {
                    self.bytes -= entry_size(key, &old.value);
                }
            }
        }
    }
}

impl KvState {
    /// Recounts the bytes held (after deserializing a snapshot).
    pub fn recount(&mut self) {
        self.bytes = self
            .entries
            .iter()
            .map(|(k, e)| entry_size(k, &e.value))
            .sum();
    }

    /// Bytes held, expired entries included until they are swept.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Keys held, expired ones included until they are swept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The live entry of `key`.
    pub fn get(&self, key: &str, now_ms: i64) -> Option<&Entry> {
        self.entries.get(key).filter(|e| e.live(now_ms))
    }

    /// The expired keys.
    fn expired(&self, now_ms: i64) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, e)| !e.live(now_ms))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Forgets expired entries (in memory only: the journal replays them
    /// as expired, and a snapshot leaves them out).
    pub fn sweep(&mut self, now_ms: i64) {
        for key in self.expired(now_ms) {
            self.apply(&KvEvent::Delete { key });
        }
    }
}

/// Where a namespace's changes are made durable.
pub trait Sink: Send {
    /// Makes `event` survive the broker being killed once this returns (it
    /// is not applied yet; `state` is as before it).
    fn write(&mut self, event: &KvEvent, state: &KvState) -> Result<(), KvError>;

    /// After a batch that wrote, outside the plugin's deadline: what the
    /// durability policy asks (an fsync, or the cluster's acknowledgement),
    /// and upkeep (compaction, sweeping expired keys).
    fn flush(&mut self, state: &mut KvState) -> Result<(), KvError>;

    /// Whether a change another node stored (at `revision` of the shared
    /// store) should replace what this node holds for `key`. Only a sink
    /// over a shared store sees such changes.
    fn accepts(&mut self, _key: &str, _revision: u64) -> bool {
        false
    }
}

/// Keeps nothing (an engine without a data directory: `sluice plugin
/// test`, unit tests).
pub struct MemorySink;

impl Sink for MemorySink {
    fn write(&mut self, _: &KvEvent, _: &KvState) -> Result<(), KvError> {
        Ok(())
    }

    fn flush(&mut self, _: &mut KvState) -> Result<(), KvError> {
        Ok(())
    }
}

/// Now, in ms since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `now + ttl`, saturating.
fn expiry(now_ms: i64, ttl_ms: Option<u64>) -> Option<i64> {
    ttl_ms.map(|ttl| now_ms.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)))
}

/// Checks a key and a value against the limits.
fn check(limits: &Limits, key: &str, value: Option<&[u8]>) -> Result<(), KvError> {
    if key.is_empty() || key.len() > limits.max_key {
        return Err(KvError::KeyTooLong {
            len: key.len(),
            max: limits.max_key,
        });
    }
    match value {
        Some(v) if v.len() > limits.max_value => Err(KvError::ValueTooLarge {
            len: v.len(),
            max: limits.max_value,
        }),
        _ => Ok(()),
    }
}

/// The value after `incr`.
fn incremented(current: Option<&Entry>, delta: i64) -> Result<i64, KvError> {
    let base = match current {
        None => 0,
        Some(e) => std::str::from_utf8(&e.value)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .ok_or(KvError::NotANumber)?,
    };
    base.checked_add(delta).ok_or(KvError::NotANumber)
}

struct Inner {
    state: KvState,
    sink: Box<dyn Sink>,
    /// Written since the last flush.
    dirty: bool,
}

/// One plugin's state.
pub struct Namespace {
    name: String,
    limits: Limits,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name)
            .finish()
    }
}

impl Namespace {
    /// A namespace holding `state`, writing through `sink`.
    pub fn new(name: &str, limits: Limits, mut state: KvState, sink: Box<dyn Sink>) -> Namespace {
        state.recount();
        Namespace {
            name: name.to_owned(),
            limits,
            inner: Mutex::new(Inner {
                state,
                sink,
                dirty: false,
            }),
        }
    }

    /// An empty namespace kept in memory only.
    pub fn in_memory(name: &str, limits: Limits) -> Namespace {
        Namespace::new(name, limits, KvState::default(), Box::new(MemorySink))
    }

    /// The plugin it belongs to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Keys and bytes held (expired ones included until swept).
    pub fn usage(&self) -> (usize, u64) {
        let inner = lock(&self.inner);
        (inner.state.len(), inner.state.bytes())
    }

    /// The value of `key`, if live.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check(&self.limits, key, None)?;
        let inner = lock(&self.inner);
        Ok(inner.state.get(key, now_ms()).map(|e| e.value.clone()))
    }

    /// The live entry of `key` (for an overlay).
    pub(crate) fn entry(&self, key: &str, now_ms: i64) -> Option<Entry> {
        lock(&self.inner).state.get(key, now_ms).cloned()
    }

    /// Sets `key`, expiring after `ttl_ms` if given.
    pub fn set(&self, key: &str, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<(), KvError> {
        check(&self.limits, key, Some(&value))?;
        let now = now_ms();
        let entry = Entry {
            value,
            expires_ms: expiry(now, ttl_ms),
        };
        self.write(KvEvent::Set {
            key: key.to_owned(),
            entry,
        })
    }

    /// Removes `key`; true if it was live.
    pub fn delete(&self, key: &str) -> Result<bool, KvError> {
        check(&self.limits, key, None)?;
        let mut inner = lock(&self.inner);
        let Some(old) = inner.state.entries.get(key) else {
            return Ok(false);
        };
        let was_live = old.live(now_ms());
        self.commit(
            &mut inner,
            KvEvent::Delete {
                key: key.to_owned(),
            },
        )?;
        Ok(was_live)
    }

    /// Adds `delta` to the integer at `key`; `ttl_ms` applies if this
    /// creates the key.
    pub fn incr(&self, key: &str, delta: i64, ttl_ms: Option<u64>) -> Result<i64, KvError> {
        check(&self.limits, key, None)?;
        let now = now_ms();
        let mut inner = lock(&self.inner);
        let current = inner.state.get(key, now);
        let value = incremented(current, delta)?;
        let expires_ms = match current {
            Some(e) => e.expires_ms,
            None => expiry(now, ttl_ms),
        };
        let entry = Entry {
            value: value.to_string().into_bytes(),
            expires_ms,
        };
        self.commit(
            &mut inner,
            KvEvent::Set {
                key: key.to_owned(),
                entry,
            },
        )?;
        Ok(value)
    }

    fn write(&self, event: KvEvent) -> Result<(), KvError> {
        let mut inner = lock(&self.inner);
        self.commit(&mut inner, event)
    }

    /// Checks the quota, writes through the sink, then applies.
    fn commit(&self, inner: &mut Inner, event: KvEvent) -> Result<(), KvError> {
        if let KvEvent::Set { key, entry } = &event {
            let old = inner
                .state
                .entries
                .get(key)
                .map_or(0, |e| entry_size(key, &e.value));
            let would = |held: u64| held - old + entry_size(key, &entry.value);
            if would(inner.state.bytes()) > self.limits.max_bytes {
                inner.state.sweep(now_ms());
                let old_now = inner
                    .state
                    .entries
                    .get(key)
                    .map_or(0, |e| entry_size(key, &e.value));
                let held = inner.state.bytes() - old_now + entry_size(key, &entry.value);
                if held > self.limits.max_bytes {
                    return Err(KvError::QuotaExceeded {
                        would: held,
                        max: self.limits.max_bytes,
                    });
                }
            }
        }
        inner.sink.write(&event, &inner.state)?;
        inner.state.apply(&event);
        inner.dirty = true;
        Ok(())
    }

    /// Ends a batch: if it wrote, asks the sink for what its durability
    /// policy wants (an fsync).
    pub fn flush(&self) -> Result<(), KvError> {
        let mut inner = lock(&self.inner);
        if !inner.dirty {
            return Ok(());
        }
        inner.dirty = false;
        let Inner { state, sink, .. } = &mut *inner;
        let flushed = sink.flush(state);
        if flushed.is_err() {
            // What the sink kept for later goes with the next flush.
            inner.dirty = true;
        }
        flushed
    }

    /// A change of `key` stored by another node at `revision` (`None`: the
    /// key was deleted), applied if the sink says it is newer than what
    /// this node holds.
    pub(crate) fn stored(&self, key: &str, revision: u64, entry: Option<Entry>) {
        let mut inner = lock(&self.inner);
        if !inner.sink.accepts(key, revision) {
            return;
        }
        let key = key.to_owned();
        inner.state.apply(&match entry {
            Some(entry) => KvEvent::Set { key, entry },
            None => KvEvent::Delete { key },
        });
    }
}

/// Opens a plugin's namespace: reads what it holds and gives the sink
/// its changes go to.
pub trait Opener: Send + Sync {
    /// Opens the namespace of plugin `name` (blocking).
    fn open(&self, name: &str) -> Result<(KvState, Box<dyn Sink>), KvError>;

    /// Called once with the namespace [`Opener::open`] made: a shared
    /// store starts passing other nodes' changes to [`Namespace::stored`].
    fn follow(&self, _namespace: &Arc<Namespace>) {}

    /// Whether its namespaces live across the network (their flushes wait
    /// for it).
    fn is_remote(&self) -> bool {
        false
    }
}

/// Opens namespaces kept in memory only.
pub struct MemoryOpener;

impl Opener for MemoryOpener {
    fn open(&self, _: &str) -> Result<(KvState, Box<dyn Sink>), KvError> {
        Ok((KvState::default(), Box::new(MemorySink)))
    }
}

/// Every plugin's namespace, opened on first use.
pub struct KvStores {
    opener: Box<dyn Opener>,
    limits: Limits,
    open: Mutex<HashMap<String, Arc<Namespace>>>,
}

impl std::fmt::Debug for KvStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStores")
            .field("limits", &self.limits)
            .finish()
    }
}

impl KvStores {
    /// Namespaces opened by `opener`, under `limits`.
    pub fn new(opener: Box<dyn Opener>, limits: Limits) -> KvStores {
        KvStores {
            opener,
            limits,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the namespaces live across the network.
    pub fn is_remote(&self) -> bool {
        self.opener.is_remote()
    }

    /// Namespaces in memory only.
    pub fn in_memory(limits: Limits) -> KvStores {
        KvStores::new(Box::new(MemoryOpener), limits)
    }

    /// The namespace of plugin `name`, opened if it is not yet (blocking).
    pub fn namespace(&self, name: &str) -> Result<Arc<Namespace>, KvError> {
        let mut open = lock(&self.open);
        if let Some(ns) = open.get(name) {
            return Ok(ns.clone());
        }
        let (state, sink) = self.opener.open(name)?;
        let ns = Arc::new(Namespace::new(name, self.limits, state, sink));
        self.opener.follow(&ns);
        open.insert(name.to_owned(), ns.clone());
        Ok(ns)
    }

    /// The handle a live instance of plugin `name` gets.
    pub fn handle(&self, name: &str) -> KvHandle {
        match self.namespace(name) {
            Ok(ns) => KvHandle::Live(ns),
            Err(e) => {
                tracing::error!(plugin = %name, error = %e, "plugin state cannot be opened; the plugin's state calls fail until it can");
                KvHandle::Broken(e)
            }
        }
    }
}

#[cfg(test)]
mod tests;
