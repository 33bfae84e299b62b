//! [`Overlay`]: a shadow version's view of its plugin's state. It reads
//! what the live namespace holds, and its own writes, which stay in memory
//! and are dropped with it: the live namespace never sees them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{check, entry_size, expiry, incremented, now_ms, Entry, KvError, Namespace};
use crate::sync::lock;

/// A throwaway layer of writes over a live namespace.
#[derive(Debug)]
pub struct Overlay {
    live: Arc<Namespace>,
    /// Key to its entry in the overlay (`None`: deleted here).
    changes: Mutex<Changes>,
}

#[derive(Debug, Default)]
struct Changes {
    entries: HashMap<String, Option<Entry>>,
    /// What the entries here count against the quota (a deletion counts
    /// its key, so deleting many keys cannot grow it without bound).
    bytes: u64,
}

/// What an overlay entry counts against the quota.
fn size(key: &str, entry: &Option<Entry>) -> u64 {
    entry
        .as_ref()
        .map_or(entry_size(key, &[]), |e| entry_size(key, &e.value))
}

impl Changes {
    fn put(&mut self, key: &str, entry: Option<Entry>) {
        self.bytes += size(key, &entry);
        if let Some(old) = self.entries.insert(key.to_owned(), entry) {
            self.bytes -= size(key, &old);
        }
    }

    /// Forgets the entries set here that expired (they read as unset, as
    /// they would in the live namespace).
    fn sweep(&mut self, now: i64) {
        let expired: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.as_ref().is_some_and(|e| !e.live(now)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            if let Some(old) = self.entries.remove(&key) {
                self.bytes -= size(&key, &old);
            }
        }
    }
}

impl Overlay {
    /// An empty overlay over `live`.
    pub fn new(live: Arc<Namespace>) -> Overlay {
        Overlay {
            live,
            changes: Mutex::new(Changes::default()),
        }
    }

    fn entry(&self, changes: &Changes, key: &str, now: i64) -> Option<Entry> {
        match changes.entries.get(key) {
            Some(here) => here.clone().filter(|e| e.live(now)),
            None => self.live.entry(key, now),
        }
    }

    /// `get`, as a shadow version sees it.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check(self.live.limits(), key, None)?;
        let changes = lock(&self.changes);
        Ok(self.entry(&changes, key, now_ms()).map(|e| e.value))
    }

    fn put(&self, changes: &mut Changes, key: &str, entry: Entry) -> Result<(), KvError> {
        let max = self.live.limits().max_bytes;
        let would = |changes: &Changes| {
            let old = changes.entries.get(key).map_or(0, |e| size(key, e));
            changes.bytes - old + entry_size(key, &entry.value)
        };
        if would(changes) > max {
            changes.sweep(now_ms());
            let would = would(changes);
            if would > max {
                return Err(KvError::QuotaExceeded { would, max });
            }
        }
        changes.put(key, Some(entry));
        Ok(())
    }

    /// `set`, kept in the overlay.
    pub fn set(&self, key: &str, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<(), KvError> {
        check(self.live.limits(), key, Some(&value))?;
        let entry = Entry {
            value,
            expires_ms: expiry(now_ms(), ttl_ms),
        };
        self.put(&mut lock(&self.changes), key, entry)
    }

    /// `delete`, kept in the overlay.
    pub fn delete(&self, key: &str) -> Result<bool, KvError> {
        check(self.live.limits(), key, None)?;
        let mut changes = lock(&self.changes);
        let was = self.entry(&changes, key, now_ms()).is_some();
        changes.put(key, None);
        Ok(was)
    }

    /// `incr`, kept in the overlay.
    pub fn incr(&self, key: &str, delta: i64, ttl_ms: Option<u64>) -> Result<i64, KvError> {
        check(self.live.limits(), key, None)?;
        let now = now_ms();
        let mut changes = lock(&self.changes);
        let current = self.entry(&changes, key, now);
        let value = incremented(current.as_ref(), delta)?;
        let entry = Entry {
            value: value.to_string().into_bytes(),
            expires_ms: current.map_or_else(|| expiry(now, ttl_ms), |e| e.expires_ms),
        };
        self.put(&mut changes, key, entry)?;
        Ok(value)
    }
}
