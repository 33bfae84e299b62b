//! [`LoadedPlugin`]: one version of one plugin: its compiled
//! `InstancePre`, a pool of initialised instances, and its statistics.
//!
//! A call takes an idle instance (or makes one: instantiate, then `init`
//! with the plugin's config), sets the epoch deadline, calls `handle` and
//! gives the instance back. An instance that trapped, timed out or ran out
//! of memory is dropped, never reused: the next call gets a fresh one.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use wasmtime::Store;

use super::bindings::{Batch, Outcomes, Plugin, PluginPre};
use super::cache::LoadSource;
use super::engine::{PluginEngine, TICK};
use super::kv::{KvHandle, Overlay};
use super::logs::LogContext;
use super::state::StoreState;
use super::stats::PluginStats;
use crate::sync::lock;

pub use super::error::PluginError;

/// How one plugin is configured.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSpec {
    /// Its name in the config.
    pub name: String,
    /// The component file.
    pub path: PathBuf,
    /// Its configuration as JSON.
    pub config_json: String,
    /// Deadline of one `handle` call.
    pub timeout: Duration,
    /// Memory cap of one instance, in bytes.
    pub memory_bytes: usize,
}

/// Loading a plugin version: read its file, compile it (or take it from
/// the cache) and initialise it. Here rather than in `engine` so that the
/// engine knows nothing of the versions it loads.
impl PluginEngine {
    /// Reads a plugin's file (blocking).
    pub fn read(spec: &PluginSpec) -> Result<Vec<u8>, PluginError> {
        std::fs::read(&spec.path).map_err(|e| PluginError::Read {
            plugin: spec.name.clone(),
            path: spec.path.clone(),
            reason: e.to_string(),
        })
    }

    /// Reads, compiles (or takes from the cache) and initialises a plugin
    /// (blocking).
    pub fn load(&self, spec: PluginSpec) -> Result<LoadedPlugin, PluginError> {
        let bytes = Self::read(&spec)?;
        self.load_bytes(spec, &bytes)
    }

    /// Compiles (or takes from the cache) and initialises a plugin from the
    /// bytes of its file (blocking).
    pub fn load_bytes(&self, spec: PluginSpec, bytes: &[u8]) -> Result<LoadedPlugin, PluginError> {
        self.load_digested(spec, bytes, &Sha256::digest(bytes).into())
    }

    /// [`PluginEngine::load_bytes`] when the caller already has the bytes'
    /// SHA-256 (a reload compares it with the running version's first).
    pub fn load_digested(
        &self,
        spec: PluginSpec,
        bytes: &[u8],
        digest: &[u8; 32],
    ) -> Result<LoadedPlugin, PluginError> {
        self.load_as(spec, bytes, digest, None)
    }

    /// [`PluginEngine::load_digested`] as a shadow version: its state
    /// writes, from `init` on, go to a throwaway overlay over the plugin's
    /// live namespace.
    pub fn load_shadow(
        &self,
        spec: PluginSpec,
        bytes: &[u8],
        digest: &[u8; 32],
    ) -> Result<LoadedPlugin, PluginError> {
        let live = self
            .kv()
            .namespace(&spec.name)
            .map_err(|e| PluginError::State {
                plugin: spec.name.clone(),
                reason: e.to_string(),
            })?;
        self.load_as(spec, bytes, digest, Some(Arc::new(Overlay::new(live))))
    }

    fn load_as(
        &self,
        spec: PluginSpec,
        bytes: &[u8],
        digest: &[u8; 32],
        overlay: Option<Arc<Overlay>>,
    ) -> Result<LoadedPlugin, PluginError> {
        let started = Instant::now();
        let (pre, source) = self.compile(&spec.name, &spec.path, bytes, digest)?;
        LoadedPlugin::new(self.clone(), spec, digest, pre, source, started, overlay)
    }
}

struct Live {
    store: Store<StoreState>,
    plugin: Plugin,
}

/// One loaded version of a plugin.
pub struct LoadedPlugin {
    engine: PluginEngine,
    spec: PluginSpec,
    /// First 12 hex digits of the component's SHA-256.
    pub hash: String,
    /// When this version was loaded.
    pub loaded_at: SystemTime,
    /// Compiled for this load, or taken from the cache.
    pub source: LoadSource,
    /// Compiling (or the cache look-up) and the first `init`.
    pub load_took: Duration,
    pre: PluginPre<StoreState>,
    name: Arc<str>,
    idle: Mutex<Vec<Live>>,
    /// Set for a shadow version: its state writes stay here.
    overlay: Option<Arc<Overlay>>,
    /// Calls, errors, latency.
    pub stats: PluginStats,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.spec.name)
            .field("hash", &self.hash)
            .finish()
    }
}

/// The short form of a content digest: its first 12 hex digits.
pub fn short_hash(digest: &[u8; 32]) -> String {
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Idle instances kept per plugin version.
const MAX_IDLE: usize = 8;

impl LoadedPlugin {
    /// Wraps a compiled plugin and checks that it initialises with its
    /// config (so a bad config is refused at load, not at the first call).
    pub fn new(
        engine: PluginEngine,
        spec: PluginSpec,
        digest: &[u8; 32],
        pre: PluginPre<StoreState>,
        source: LoadSource,
        started: Instant,
        overlay: Option<Arc<Overlay>>,
    ) -> Result<LoadedPlugin, PluginError> {
        let mut loaded = LoadedPlugin {
            engine,
            name: spec.name.as_str().into(),
            spec,
            hash: short_hash(digest),
            loaded_at: SystemTime::now(),
            source,
            load_took: Duration::ZERO,
            pre,
            idle: Mutex::new(Vec::new()),
            overlay,
            stats: PluginStats::default(),
        };
        let first = loaded.instantiate()?;
        loaded.give_back(first);
        loaded.load_took = started.elapsed();
        Ok(loaded)
    }

    /// The same version with another config (a subscription's own
    /// instance); its `init` must accept the config.
    pub fn reconfigured(&self, config_json: &str) -> Result<LoadedPlugin, PluginError> {
        self.variant(config_json, self.overlay.clone())
    }

    /// This version taking live traffic: a shadow version promoted, its
    /// state calls now on the live namespace (a fresh instance pool; the
    /// overlay's writes are dropped).
    pub fn unshadowed(&self) -> Result<LoadedPlugin, PluginError> {
        self.variant(&self.spec.config_json, None)
    }

    /// Whether a call may run on an async worker: not if its state lives
    /// in the cluster (the end-of-call flush waits for the bucket).
    pub fn may_run_on_worker(&self) -> bool {
        !self.engine.kv().is_remote()
    }

    /// Whether this is a shadow version.
    pub fn is_shadow(&self) -> bool {
        self.overlay.is_some()
    }

    fn variant(
        &self,
        config_json: &str,
        overlay: Option<Arc<Overlay>>,
    ) -> Result<LoadedPlugin, PluginError> {
        let loaded = LoadedPlugin {
            engine: self.engine.clone(),
            spec: PluginSpec {
                config_json: config_json.to_owned(),
                ..self.spec.clone()
            },
            hash: self.hash.clone(),
            loaded_at: SystemTime::now(),
            source: LoadSource::Cached,
            load_took: Duration::ZERO,
            pre: self.pre.clone(),
            name: self.name.clone(),
            idle: Mutex::new(Vec::new()),
            overlay,
            stats: PluginStats::default(),
        };
        let first = loaded.instantiate()?;
        loaded.give_back(first);
        Ok(loaded)
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// How it is configured.
    pub fn spec(&self) -> &PluginSpec {
        &self.spec
    }

    fn deadline_ticks(&self) -> u64 {
        (self.spec.timeout.as_nanos() / TICK.as_nanos()).max(1) as u64 + 1
    }

    fn instantiate(&self) -> Result<Live, PluginError> {
        let log = LogContext::new(
            self.name.clone(),
            self.hash.as_str().into(),
            self.engine.logs().cloned(),
        );
        let kv = match &self.overlay {
            Some(overlay) => KvHandle::Shadow(overlay.clone()),
            None => self.engine.kv().handle(&self.spec.name),
        };
        let state = StoreState::new(Arc::new(log), kv, self.spec.memory_bytes);
        let mut store = Store::new(self.engine.engine(), state);
        store.limiter(|state| state);
        store.set_epoch_deadline(self.deadline_ticks());
        store.epoch_deadline_trap();
        let plugin = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| self.classify(&store, e))?;
        match plugin.call_init(&mut store, &self.spec.config_json) {
            Ok(Ok(())) => Ok(Live { store, plugin }),
            Ok(Err(reason)) => Err(PluginError::Init {
                plugin: self.spec.name.clone(),
                reason,
            }),
            Err(e) => Err(self.classify(&store, e)),
        }
    }

    fn give_back(&self, live: Live) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push(live);
        }
    }

    fn classify(&self, store: &Store<StoreState>, error: wasmtime::Error) -> PluginError {
        let plugin = self.spec.name.clone();
        if error.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
            return PluginError::Timeout {
                plugin,
                timeout: self.spec.timeout,
            };
        }
        if store.data().memory_denied {
            return PluginError::OutOfMemory {
                plugin,
                cap_bytes: self.spec.memory_bytes,
            };
        }
        PluginError::Trap {
            plugin,
            reason: format!("{error:#}"),
        }
    }

    /// Calls `handle` on one batch (blocking; run it on a blocking thread).
    /// The plugin's log lines name the batch's topic and messages.
    pub fn call(&self, batch: &Arc<Batch>) -> Result<Outcomes, PluginError> {
        let start = Instant::now();
        let result = self.call_once(batch);
        self.stats.record(
            batch.payload_ends.len(),
            start.elapsed(),
            result.as_ref().err(),
        );
        result
    }

    fn call_once(&self, batch: &Arc<Batch>) -> Result<Outcomes, PluginError> {
        let idle = lock(&self.idle).pop();
        let mut live = match idle {
            Some(live) => live,
            None => self.instantiate()?,
        };
        live.store.set_epoch_deadline(self.deadline_ticks());
        let log = live.store.data().log.clone();
        log.handling(Some(batch.clone() as Arc<dyn super::logs::Handling>));
        let called = live.plugin.call_handle(&mut live.store, batch);
        log.handling(None);
        match called {
            Ok(outcomes) => {
                let expected = batch.payload_ends.len();
                let got = outcomes.results.len();
                if got != expected {
                    // Not reused: a plugin that miscounts is not trusted.
                    drop(live);
                    return Err(PluginError::WrongCount {
                        plugin: self.spec.name.clone(),
                        expected,
                        got,
                    });
                }
                // What the batch wrote to its state is made durable
                // before any of its outcomes is acted on.
                let flushed = live.store.data().kv.flush();
                self.give_back(live);
                flushed.map_err(|e| PluginError::State {
                    plugin: self.spec.name.clone(),
                    reason: e.to_string(),
                })?;
                Ok(outcomes)
            }
            // The instance is dropped here: a fresh one serves the next call.
            // What it wrote before it failed is kept (state is not rolled
            // back with a batch), so it is made durable like any write.
            Err(e) => {
                if let Err(flush) = live.store.data().kv.flush() {
                    tracing::warn!(plugin = %self.spec.name, error = %flush, "the state a failed call wrote could not be made durable");
                }
                Err(self.classify(&live.store, e))
            }
        }
    }
}
