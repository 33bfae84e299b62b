//! Plugin state in cluster mode: every namespace lives in the JetStream
//! key-value bucket [`STATE_BUCKET`], and each node holds the namespaces of
//! the plugins it runs in memory, in front of it.
//!
//! - **Reads** are served from the node's copy: no network inside the
//!   plugin's time budget.
//! - **Writes** change the node's copy at once (the plugin reads its own
//!   writes) and are queued; at the end of the call, outside its deadline,
//!   [`ClusterSink::flush`] puts them to the bucket and waits for its
//!   acknowledgements. Only then does the pipeline act on the batch's
//!   outcomes, so a publish is acknowledged only once the state its
//!   plugins wrote is stored in the cluster. A bucket that fails fails the
//!   call (the stage's `on_error` applies) and the keys it wrote are read
//!   back from the bucket.
//! - **Other nodes' writes** arrive through a watch on the namespace's keys
//!   and replace this node's copy of a key when their revision is newer
//!   than the one it holds, and the key has no write of its own waiting.
//!   So nodes converge on the bucket's order: for one key, the last write
//!   stored wins. `incr` is atomic on one node, not across nodes.
//!
//! Keys in the bucket are `<plugin>.<key>`, each base64url-encoded (no
//! padding), so any plugin name and key fit the bucket's key alphabet and
//! one plugin's keys never match another's filter. The key `<plugin>.=`
//! (never an encoded key) marks that the namespace was opened: written at
//! each open, it makes the first watch of the namespace non-empty, so the
//! node knows when it has read everything stored.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::runtime::Handle;

use super::{now_ms, Entry, KvError, KvEvent, KvState, Namespace, Opener, Sink};
use crate::store::journal::Journaled;
use crate::sync::lock;

/// The bucket holding every plugin's state.
pub const STATE_BUCKET: &str = "sluice-plugin-state";

/// The wait before watching a namespace again after its watch failed.
const RETRY_DELAY: Duration = Duration::from_millis(500);

/// How often a node deletes its namespaces' expired keys from the bucket.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Expired keys deleted from the bucket per sweep at most.
const SWEEP_MAX: usize = 1000;

/// The name a namespace's keys start with.
fn prefix(plugin: &str) -> String {
    URL_SAFE_NO_PAD.encode(plugin)
}

/// The bucket key of `key` in the namespace with `prefix`.
fn bucket_key(prefix: &str, key: &str) -> String {
    format!("{prefix}.{}", URL_SAFE_NO_PAD.encode(key))
}

/// The plugin's key of a bucket key of the namespace with `prefix`, or
/// `None` for the open marker and anything that is not one.
fn plugin_key(prefix: &str, bucket_key: &str) -> Option<String> {
    let encoded = bucket_key.strip_prefix(prefix)?.strip_prefix('.')?;
    let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    String::from_utf8(bytes).ok()
}

/// The value a bucket entry holds for the node's copy: `None` for a
/// deletion (or an entry that does not decode, which is logged).
fn decoded(entry: &kv::Entry) -> Option<Entry> {
    if entry.operation != kv::Operation::Put {
        return None;
    }
    match rmp_serde::from_slice(&entry.value) {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::warn!(key = %entry.key, error = %e, "a plugin state entry that does not decode is taken as deleted");
            None
        }
    }
}

/// Runs `future` to its end from plugin code: on an async worker, after
/// handing the worker's other tasks off (`block_in_place`); on any other
/// thread, directly. A current-thread runtime cannot wait here: an error.
fn block<F: Future>(runtime: &Handle, future: F) -> Result<F::Output, KvError> {
    if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return Err(unavailable(
            "cannot wait for plugin state",
            "cluster mode needs the multi-threaded runtime",
        ));
    }
    Ok(tokio::task::block_in_place(|| runtime.block_on(future)))
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> KvError {
    KvError::Unavailable(format!("{what} ({STATE_BUCKET}): {e}"))
}

/// Opens namespaces in the bucket.
pub struct ClusterOpener {
    bucket: kv::Store,
    runtime: Handle,
    timeout: Duration,
    /// The watch each opened namespace goes on following, by plugin.
    watches: Mutex<HashMap<String, (kv::Watch, u64)>>,
}

impl ClusterOpener {
    /// Namespaces in `bucket`; each bucket request waits at most
    /// `timeout`. Call on the broker's runtime.
    pub fn new(bucket: kv::Store, timeout: Duration) -> ClusterOpener {
        ClusterOpener {
            bucket,
            runtime: Handle::current(),
            timeout,
            watches: Mutex::new(HashMap::new()),
        }
    }

    /// Reads what the namespace holds; returns it, the revision of each
    /// key, and the watch to go on following it with (and the revision to
    /// watch again from).
    async fn load(&self, prefix: &str) -> Result<Loaded, KvError> {
        self.bucket
            .put(format!("{prefix}.="), Bytes::new())
            .await
            .map_err(|e| unavailable("cannot open plugin state", e))?;
        let mut watch = self
            .bucket
            .watch_with_history(format!("{prefix}.>"))
            .await
            .map_err(|e| unavailable("cannot read plugin state", e))?;
        let mut loaded = Loaded::default();
        while let Some(entry) = watch.next().await {
            let entry = entry.map_err(|e| unavailable("cannot read plugin state", e))?;
            loaded.next = entry.revision + 1;
            if let Some(key) = plugin_key(prefix, &entry.key) {
                loaded.revisions.insert(key.clone(), entry.revision);
                if let Some(value) = decoded(&entry) {
                    loaded.state.apply(&KvEvent::Set { key, entry: value });
                }
            }
            // The marker written above is in the history: the last entry
            // stored comes with nothing left to deliver.
            if entry.delta == 0 {
                loaded.watch = Some(watch);
                return Ok(loaded);
            }
        }
        Err(unavailable("cannot read plugin state", "the watch ended"))
    }
}

#[derive(Default)]
struct Loaded {
    state: KvState,
    revisions: HashMap<String, u64>,
    watch: Option<kv::Watch>,
    next: u64,
}

impl Opener for ClusterOpener {
    fn open(&self, name: &str) -> Result<(KvState, Box<dyn Sink>), KvError> {
        let prefix = prefix(name);
        let loaded = block(&self.runtime, async {
            tokio::time::timeout(self.timeout, self.load(&prefix))
                .await
                .unwrap_or_else(|_| Err(unavailable("cannot read plugin state", "timed out")))
        })??;
        if let Some(watch) = loaded.watch {
            lock(&self.watches).insert(name.to_owned(), (watch, loaded.next));
        }
        let sink = ClusterSink {
            bucket: self.bucket.clone(),
            runtime: self.runtime.clone(),
            timeout: self.timeout,
            prefix,
            queued: Vec::new(),
            tracked: Tracked {
                revisions: loaded.revisions,
                pending: HashSet::new(),
            },
            last_sweep: Instant::now(),
        };
        Ok((loaded.state, Box::new(sink)))
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn follow(&self, namespace: &Arc<Namespace>) {
        let Some((watch, next)) = lock(&self.watches).remove(namespace.name()) else {
            return;
        };
        let follower = Follower {
            bucket: self.bucket.clone(),
            prefix: prefix(namespace.name()),
            namespace: Arc::downgrade(namespace),
        };
        self.runtime.spawn(follower.run(watch, next));
    }
}

/// Passes other nodes' changes of one namespace to it, for as long as it
/// exists.
struct Follower {
    bucket: kv::Store,
    prefix: String,
    namespace: Weak<Namespace>,
}

impl Follower {
    async fn run(self, mut watch: kv::Watch, mut next: u64) {
        loop {
            while let Some(change) = watch.next().await {
                let entry = match change {
                    Ok(entry) => entry,
                    Err(e) => {
                        tracing::warn!(prefix = %self.prefix, error = %e, "the plugin state watch failed; watching again");
                        break;
                    }
                };
                next = entry.revision + 1;
                let Some(namespace) = self.namespace.upgrade() else {
                    return;
                };
                if let Some(key) = plugin_key(&self.prefix, &entry.key) {
                    let value = decoded(&entry);
                    // The namespace's lock may be held over a flush's
                    // round trip: wait for it off the async workers (the
                    // follower runs only where a flush could wait: on a
                    // multi-threaded runtime).
                    tokio::task::block_in_place(|| namespace.stored(&key, entry.revision, value));
                }
            }
            loop {
                tokio::time::sleep(RETRY_DELAY).await;
                if self.namespace.strong_count() == 0 {
                    return;
                }
                match self
                    .bucket
                    .watch_from_revision(format!("{}.>", self.prefix), next)
                    .await
                {
                    Ok(again) => {
                        watch = again;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(prefix = %self.prefix, error = %e, "cannot watch plugin state; trying again");
                    }
                }
            }
        }
    }
}

/// What a node knows of its copy of a namespace against the bucket.
#[derive(Debug, Default)]
struct Tracked {
    /// The newest revision of each key this node holds.
    revisions: HashMap<String, u64>,
    /// Keys written here and not yet put to the bucket.
    pending: HashSet<String>,
}

impl Tracked {
    /// Whether another node's change of `key` at `revision` replaces this
    /// node's copy (and if so, it is now the one held).
    fn accepts(&mut self, key: &str, revision: u64) -> bool {
        if self.pending.contains(key) {
            // This node's own write comes later in the bucket's order.
            return false;
        }
        match self.revisions.get(key) {
            Some(&held) if held >= revision => false,
            _ => {
                self.revisions.insert(key.to_owned(), revision);
                true
            }
        }
    }

    /// This node's own write of `key` was stored at `revision` (a
    /// deletion's revision is not known: the one held stays).
    fn stored(&mut self, key: &str, revision: Option<u64>) {
        if let Some(revision) = revision {
            let held = self.revisions.entry(key.to_owned()).or_default();
            *held = (*held).max(revision);
        }
    }
}

/// A namespace's writes to the bucket.
struct ClusterSink {
    bucket: kv::Store,
    runtime: Handle,
    timeout: Duration,
    prefix: String,
    /// Changes made here since the last flush, oldest first.
    queued: Vec<KvEvent>,
    tracked: Tracked,
    last_sweep: Instant,
}

fn key_of(event: &KvEvent) -> &str {
    match event {
        KvEvent::Set { key, .. } | KvEvent::Delete { key } => key,
    }
}

impl ClusterSink {
    /// Puts `changes` (one per key) to the bucket; the revision each was
    /// stored at, if known.
    async fn put_all(&self, changes: &[KvEvent]) -> Result<Vec<Option<u64>>, KvError> {
        let puts = changes.iter().map(|change| async move {
            let key = bucket_key(&self.prefix, key_of(change));
            match change {
                KvEvent::Set { entry, .. } => {
                    let bytes = rmp_serde::to_vec(entry)
                        .map_err(|e| unavailable("cannot encode plugin state", e))?;
                    let revision = self
                        .bucket
                        .put(key, bytes.into())
                        .await
                        .map_err(|e| unavailable("cannot store plugin state", e))?;
                    Ok(Some(revision))
                }
                KvEvent::Delete { .. } => {
                    self.bucket
                        .delete(key)
                        .await
                        .map_err(|e| unavailable("cannot store plugin state", e))?;
                    Ok(None)
                }
            }
        });
        let all = futures_util::future::try_join_all(puts);
        tokio::time::timeout(self.timeout, all)
            .await
            .unwrap_or_else(|_| Err(unavailable("cannot store plugin state", "timed out")))
    }

    /// After a failed flush: this node's copy of `keys` as the bucket has
    /// them, read together within one timeout. The keys it could not read
    /// (the bucket is down) are returned: their changes are kept for the
    /// next flush.
    async fn reread(&mut self, keys: &[String], state: &mut KvState) -> Vec<String> {
        let reads = keys
            .iter()
            .map(|key| self.bucket.entry(bucket_key(&self.prefix, key)));
        let Ok(results) =
            tokio::time::timeout(self.timeout, futures_util::future::join_all(reads)).await
        else {
            tracing::warn!(
                keys = keys.len(),
                "cannot read back plugin state after a failed write: timed out"
            );
            return keys.to_vec();
        };
        let mut unread = Vec::new();
        for (key, entry) in keys.iter().zip(results) {
            let key = key.clone();
            match entry {
                Ok(Some(entry)) => {
                    self.tracked.revisions.insert(key.clone(), entry.revision);
                    state.apply(&match decoded(&entry) {
                        Some(value) => KvEvent::Set { key, entry: value },
                        None => KvEvent::Delete { key },
                    });
                }
                Ok(None) => state.apply(&KvEvent::Delete { key }),
                Err(e) => {
                    tracing::warn!(key = %key, error = %e, "cannot read back plugin state after a failed write");
                    unread.push(key);
                }
            }
        }
        unread
    }

    /// Queues deletions of up to [`SWEEP_MAX`] expired keys (applied here
    /// at once), at most every [`SWEEP_EVERY`].
    fn sweep(&mut self, state: &mut KvState) {
        if self.last_sweep.elapsed() < SWEEP_EVERY {
            return;
        }
        self.last_sweep = Instant::now();
        for key in state.expired(now_ms()).into_iter().take(SWEEP_MAX) {
            let event = KvEvent::Delete { key };
            state.apply(&event);
            self.queued.push(event);
        }
    }
}

impl Sink for ClusterSink {
    fn write(&mut self, event: &KvEvent, _state: &KvState) -> Result<(), KvError> {
        self.tracked.pending.insert(key_of(event).to_owned());
        self.queued.push(event.clone());
        Ok(())
    }

    fn flush(&mut self, state: &mut KvState) -> Result<(), KvError> {
        self.sweep(state);
        if self.queued.is_empty() {
            return Ok(());
        }
        // One change per key: its last.
        let mut last: HashMap<String, KvEvent> = HashMap::new();
        for event in std::mem::take(&mut self.queued) {
            last.insert(key_of(&event).to_owned(), event);
        }
        let changes: Vec<KvEvent> = last.into_values().collect();
        let runtime = self.runtime.clone();
        let stored = block(&runtime, self.put_all(&changes)).and_then(|stored| stored);
        self.tracked.pending.clear();
        match stored {
            Ok(revisions) => {
                for (change, revision) in changes.iter().zip(revisions) {
                    self.tracked.stored(key_of(change), revision);
                }
                Ok(())
            }
            Err(e) => {
                // The copy goes back to what the bucket holds; a key that
                // cannot be read back keeps its change, to be put again by
                // the next flush (so the node and the bucket meet again).
                let keys: Vec<String> = changes.iter().map(|c| key_of(c).to_owned()).collect();
                let unread = block(&runtime, self.reread(&keys, state)).unwrap_or(keys);
                for change in changes {
                    if unread.iter().any(|k| k == key_of(&change)) {
                        self.tracked.pending.insert(key_of(&change).to_owned());
                        self.queued.push(change);
                    }
                }
                Err(e)
            }
        }
    }

    fn accepts(&mut self, key: &str, revision: u64) -> bool {
        self.tracked.accepts(key, revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_stay_in_their_namespace() {
        for (plugin, key) in [("limiter", "n:alice"), ("a.b", ""), ("x", "ünï/cödé.>*")] {
            let p = prefix(plugin);
            let k = bucket_key(&p, key);
            assert!(
                k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.=".contains(c)),
                "{k} is a valid bucket key"
            );
            assert_eq!(plugin_key(&p, &k).as_deref(), Some(key));
        }
        // A dotted plugin name does not share a prefix with another.
        let (a, ab) = (prefix("a"), prefix("a.b"));
        assert_eq!(plugin_key(&a, &bucket_key(&ab, "k")), None);
        // The open marker is no key.
        assert_eq!(plugin_key(&a, &format!("{a}.=")), None);
    }

    #[test]
    fn another_nodes_change_replaces_only_older_copies_with_nothing_waiting() {
        let mut t = Tracked::default();
        assert!(t.accepts("k", 5), "a key not held yet");
        assert!(!t.accepts("k", 5), "the same revision again");
        assert!(!t.accepts("k", 4), "an older one arriving late");
        assert!(t.accepts("k", 7));
        // Written here and not yet stored: this node's write wins.
        t.pending.insert("k".into());
        assert!(!t.accepts("k", 9));
        t.pending.clear();
        // Stored at 10: the watch's echo of it, and anything older, is
        // ignored; a later write from elsewhere is taken.
        t.stored("k", Some(10));
        assert!(!t.accepts("k", 9));
        assert!(!t.accepts("k", 10));
        assert!(t.accepts("k", 11));
        // A deletion keeps the revision held.
        t.stored("k", None);
        assert!(!t.accepts("k", 11));
    }
}
