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

use wasmtime::Store;

use super::bindings::{Batch, Outcomes, Plugin, PluginPre};
use super::cache::LoadSource;
use super::engine::{PluginEngine, TICK};
use super::state::StoreState;
use super::stats::PluginStats;

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

/// Why loading or calling a plugin failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    /// The file could not be read.
    #[error("plugin {plugin}: cannot read {path}: {reason}")]
    Read {
        /// The plugin.
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is not a valid WebAssembly component.
    #[error("plugin {plugin}: {path} is not a valid WebAssembly component: {reason}")]
    Invalid {
        /// The plugin.
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The component does not implement the sluice:plugin world.
    #[error("plugin {plugin}: {path} does not implement the sluice:plugin/plugin world: {reason}")]
    WrongWorld {
        /// The plugin.
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `init` returned an error (usually a bad config).
    #[error("plugin {plugin}: init refused its config: {reason}")]
    Init {
        /// The plugin.
        plugin: String,
        /// The plugin's message.
        reason: String,
    },
    /// The call ran past its deadline.
    #[error("plugin {plugin}: timed out after {timeout:?}")]
    Timeout {
        /// The plugin.
        plugin: String,
        /// The deadline.
        timeout: Duration,
    },
    /// The instance wanted more memory than its cap.
    #[error("plugin {plugin}: out of memory (cap {cap_bytes} bytes)")]
    OutOfMemory {
        /// The plugin.
        plugin: String,
        /// The cap.
        cap_bytes: usize,
    },
    /// The guest trapped (a panic, an `unreachable`, a bad access).
    #[error("plugin {plugin}: trapped: {reason}")]
    Trap {
        /// The plugin.
        plugin: String,
        /// The trap.
        reason: String,
    },
    /// The WebAssembly engine could not be created.
    #[error("the WebAssembly engine could not start: {reason}")]
    Engine {
        /// Why.
        reason: String,
    },
    /// `handle` answered a different number of outcomes than messages.
    #[error("plugin {plugin}: returned {got} outcomes for {expected} messages")]
    WrongCount {
        /// The plugin.
        plugin: String,
        /// Messages sent.
        expected: usize,
        /// Outcomes received.
        got: usize,
    },
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
        let state = StoreState::new(self.name.clone(), self.spec.memory_bytes);
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
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
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
    pub fn call(&self, batch: &Batch) -> Result<Outcomes, PluginError> {
        let start = Instant::now();
        let result = self.call_once(batch);
        self.stats.record(
            batch.payload_ends.len(),
            start.elapsed(),
            result.as_ref().err(),
        );
        result
    }

    fn call_once(&self, batch: &Batch) -> Result<Outcomes, PluginError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut live = match idle {
            Some(live) => live,
            None => self.instantiate()?,
        };
        live.store.set_epoch_deadline(self.deadline_ticks());
        match live.plugin.call_handle(&mut live.store, batch) {
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
                self.give_back(live);
                Ok(outcomes)
            }
            // The instance is dropped here: a fresh one serves the next call.
            Err(e) => Err(self.classify(&live.store, e)),
        }
    }
}
