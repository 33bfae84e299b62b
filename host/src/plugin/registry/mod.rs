//! [`PluginRegistry`]: the plugins and pipelines in force, swapped whole
//! when a plugin file or the config file changes.
//!
//! The set in force is one immutable [`PluginSet`] behind an `ArcSwap`. A
//! publish takes the set once and runs its whole batch through it, so every
//! message is handled by exactly one version of each stage: a batch that
//! started before a swap finishes on the old versions, every later one
//! uses the new. A reload builds the new set completely off the hot path
//! (read, compile or take from the cache, instantiate, `init`) and only
//! then stores it; a version that fails any step is refused, logged once,
//! shown in `sluice plugin list`, and the running one stays.
//!
//! Reloads are serialised by one lock; the hot path never takes it.
//! Rollouts (shadow and canary versions, promotion and rollback) are swaps
//! of the same kind, in [`rollouts`].

mod rollouts;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use sluice_proto::{PluginStatus, RefusedVersion};

use super::cache::LoadSource;
use super::instance::short_hash;
use super::kv::local::LocalOpener;
use super::kv::{KvStores, Limits, Opener};
use super::logs::PluginLogs;
use super::rollout::saved::Saved;
use super::{spec_from_config, LoadedPlugin, PluginEngine, PluginError, PluginSet, PluginSpec};
use crate::config::{Config, ConfigError, PluginRuntimeConfig};

/// A version that was refused.
#[derive(Debug, Clone)]
struct Refusal {
    hash: String,
    at: SystemTime,
    error: String,
}

/// Version events kept per plugin.
const EVENTS_KEPT: usize = 20;

/// A version of a plugin taken into service or refused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VersionEvent {
    /// First 12 hex digits of the component's SHA-256.
    pub hash: String,
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
    /// `compiled` or `cached` for a version taken into service.
    pub loaded_from: Option<String>,
    /// Why it was refused, for a refused version.
    pub refused: Option<String>,
    /// File change to the version taking traffic (hot reloads, ms).
    pub reload_ms: Option<u64>,
}

/// What happened to one plugin name over this run.
#[derive(Debug, Clone, Default)]
struct History {
    /// Versions taken into service (the first load counts).
    versions: u64,
    /// Of those, how many needed a compile.
    compiles: u64,
    /// Of those, how many came from the cache.
    cache_hits: u64,
    /// The last refused version, until a newer one is taken.
    refused: Option<Refusal>,
    /// File change to new version live, of the last reload (ms).
    last_reload_ms: Option<u64>,
    /// The last [`EVENTS_KEPT`] versions loaded or refused, oldest first.
    events: std::collections::VecDeque<VersionEvent>,
}

impl History {
    fn push(&mut self, event: VersionEvent) {
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }
}

/// What a reload did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Plugins whose new version is now live: (name, old hash, new hash).
    pub swapped: Vec<(String, String, String)>,
    /// Plugins whose new version was refused: (name, error).
    pub refused: Vec<(String, String)>,
}

/// Why a changed config file was refused (the running plugins and
/// pipelines stay).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file cannot be read, does not parse or is not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A plugin of the new config does not load.
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

/// The plugins in force and how to change them.
pub struct PluginRegistry {
    current: ArcSwap<PluginSet>,
    engine: Mutex<Option<PluginEngine>>,
    cache_dir: Option<PathBuf>,
    config_path: Option<PathBuf>,
    /// The config as its file said when last taken (the baseline against
    /// which settings that need a restart are compared). Also the reload lock.
    baseline: Mutex<Config>,
    history: Mutex<BTreeMap<String, History>>,
    config_refusal: Mutex<Option<Refusal>>,
    /// Where plugins' log lines go.
    logs: Arc<PluginLogs>,
    /// Plugins' key-value state.
    kv: Arc<KvStores>,
    /// Saved rollouts and promotions (none without a data directory).
    saved: Option<Saved>,
    /// The last ended rollout of each plugin, for its status.
    ended: Mutex<BTreeMap<String, sluice_proto::RolloutStatus>>,
}

impl std::fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRegistry")
            .field("plugins", &self.current.load().plugins.len())
            .finish()
    }
}

use crate::sync::lock;

fn ms(t: SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl PluginRegistry {
    /// A registry with no plugins (no engine is made until one is needed).
    pub fn empty() -> PluginRegistry {
        PluginRegistry {
            current: ArcSwap::from_pointee(PluginSet::default()),
            engine: Mutex::new(None),
            cache_dir: None,
            config_path: None,
            baseline: Mutex::new(Config::default()),
            history: Mutex::new(BTreeMap::new()),
            config_refusal: Mutex::new(None),
            logs: Arc::new(PluginLogs::new(
                PluginRuntimeConfig::default().log_rate,
                PluginRuntimeConfig::default().log_burst,
            )),
            kv: Arc::new(KvStores::in_memory(Limits::default())),
            saved: None,
            ended: Mutex::new(BTreeMap::new()),
        }
    }

    /// Where plugins' log lines go (the broker starts their writer).
    pub fn logs(&self) -> &Arc<PluginLogs> {
        &self.logs
    }

    /// Loads every `[[plugin]]` and `[[pipeline]]` of `config` (blocking:
    /// compiles components). Any failure refuses start-up. Compiled
    /// components are cached in `<data_dir>/plugin-cache/`.
    pub fn load(config: &Config) -> Result<PluginRegistry, PluginError> {
        let state = LocalOpener::new(
            crate::disk::real(),
            &config.server.data_dir.join("plugin-state"),
            config.storage.fsync,
            config.storage.fsync_interval,
        );
        PluginRegistry::load_with_state(config, Box::new(state))
    }

    /// [`PluginRegistry::load`], with plugins' state kept where `state`
    /// opens it (the cluster's bucket in cluster mode).
    pub fn load_with_state(
        config: &Config,
        state: Box<dyn Opener>,
    ) -> Result<PluginRegistry, PluginError> {
        let baseline = config
            .source
            .as_deref()
            .and_then(|path| Config::load(path).ok())
            .unwrap_or_else(|| config.clone());
        let registry = PluginRegistry {
            cache_dir: Some(config.server.data_dir.join("plugin-cache")),
            config_path: config.source.clone(),
            baseline: Mutex::new(baseline),
            logs: Arc::new(PluginLogs::new(
                config.plugin_runtime.log_rate,
                config.plugin_runtime.log_burst,
            )),
            kv: Arc::new(KvStores::new(state, config.plugin_runtime.state_limits())),
            saved: Some(Saved::new(
                crate::disk::real(),
                &config.server.data_dir.join("plugin-rollouts"),
            )),
            ..PluginRegistry::empty()
        };
        if !config.plugins.is_empty() {
            let set = registry.build(config, None)?;
            registry.current.store(Arc::new(set));
            registry.restore_rollouts();
        }
        Ok(registry)
    }

    /// The set in force. Take it once per batch.
    pub fn current(&self) -> Arc<PluginSet> {
        self.current.load_full()
    }

    /// True when no pipeline is configured (the publish fast path).
    pub fn has_pipelines(&self) -> bool {
        !self.current.load().pipelines.is_empty()
    }

    /// The config file being watched, if the broker was started from one.
    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    /// The files of the plugins in force.
    pub fn plugin_paths(&self) -> Vec<PathBuf> {
        self.current
            .load()
            .plugins
            .values()
            .map(|p| p.spec().path.clone())
            .collect()
    }

    fn engine(&self) -> Result<PluginEngine, PluginError> {
        let mut engine = lock(&self.engine);
        if let Some(engine) = engine.as_ref() {
            return Ok(engine.clone());
        }
        let made = PluginEngine::with_cache_dir(self.cache_dir.clone())?
            .with_logs(self.logs.clone())
            .with_kv(self.kv.clone());
        *engine = Some(made.clone());
        Ok(made)
    }

    /// The version of `spec` in its file: `running` when that is the same
    /// spec and content (`false`), else a new one loaded (`true`).
    fn load_version(
        &self,
        spec: PluginSpec,
        running: Option<&Arc<LoadedPlugin>>,
    ) -> Result<(Arc<LoadedPlugin>, bool), PluginError> {
        let bytes = self.promoted_or(&spec.name, PluginEngine::read(&spec)?);
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let hash = short_hash(&digest);
        if let Some(r) = running.filter(|r| r.hash == hash && *r.spec() == spec) {
            return Ok((r.clone(), false));
        }
        let loaded = self.engine()?.load_digested(spec, &bytes, &digest)?;
        Ok((Arc::new(loaded), true))
    }

    fn note_loaded(&self, plugin: &LoadedPlugin, reload_ms: Option<u64>) {
        let mut history = lock(&self.history);
        let h = history.entry(plugin.name().to_owned()).or_default();
        h.versions += 1;
        match plugin.source {
            LoadSource::Compiled => h.compiles += 1,
            LoadSource::Cached => h.cache_hits += 1,
        }
        if h.refused.is_some() {
            h.refused = None;
        }
        if reload_ms.is_some() {
            h.last_reload_ms = reload_ms;
        }
        h.push(VersionEvent {
            hash: plugin.hash.clone(),
            at_ms: ms(plugin.loaded_at),
            loaded_from: Some(plugin.source.as_str().to_owned()),
            refused: None,
            reload_ms,
        });
    }

    /// The versions of plugin `name` loaded or refused since start (the
    /// last few), oldest first.
    pub fn version_events(&self, name: &str) -> Vec<VersionEvent> {
        lock(&self.history)
            .get(name)
            .map(|h| h.events.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Loads `wasm` as a new version of plugin `name` without putting it in
    /// force (blocking: compiles, instantiates, runs `init` with the
    /// plugin's config): what a deploy checks before storing it. Returns
    /// its hash and the file the running version is loaded from.
    pub fn check_version(&self, name: &str, wasm: &[u8]) -> Result<(String, PathBuf), PluginError> {
        let set = self.current.load_full();
        let running = set.plugins.get(name).ok_or_else(|| PluginError::Unknown {
            plugin: name.to_owned(),
        })?;
        let spec = running.spec().clone();
        let digest: [u8; 32] = Sha256::digest(wasm).into();
        let loaded = self.engine()?.load_digested(spec.clone(), wasm, &digest)?;
        Ok((loaded.hash.clone(), spec.path))
    }

    fn note_refused(&self, name: &str, hash: String, error: &PluginError) {
        let at = SystemTime::now();
        let mut history = lock(&self.history);
        let h = history.entry(name.to_owned()).or_default();
        h.push(VersionEvent {
            hash: hash.clone(),
            at_ms: ms(at),
            loaded_from: None,
            refused: Some(error.to_string()),
            reload_ms: None,
        });
        h.refused = Some(Refusal {
            hash,
            at,
            error: error.to_string(),
        });
    }

    /// Builds a whole set from `config`, reusing versions of `old` whose
    /// spec and file did not change. The first failure refuses it all.
    fn build(&self, config: &Config, old: Option<&PluginSet>) -> Result<PluginSet, PluginError> {
        let mut plugins = BTreeMap::new();
        let mut fresh = Vec::new();
        for plugin in &config.plugins {
            let spec = spec_from_config(config, plugin);
            let running = old.and_then(|set| set.plugins.get(&plugin.name));
            let (loaded, new) = self.load_version(spec, running)?;
            if new {
                fresh.push(loaded.clone());
            }
            plugins.insert(plugin.name.clone(), loaded);
        }
        for loaded in &fresh {
            tracing::info!(
                plugin = loaded.name(),
                hash = %loaded.hash,
                path = %loaded.spec().path.display(),
                from = loaded.source.as_str(),
                took_ms = loaded.load_took.as_millis() as u64,
                "plugin loaded"
            );
            self.note_loaded(loaded, None);
        }
        let rollouts = old.map(|set| set.rollouts.clone()).unwrap_or_default();
        Ok(PluginSet::assemble(config, plugins, &rollouts))
    }

    /// Acts on changed plugin files (blocking). Each plugin whose file is
    /// among `changed` and whose content differs from the running version
    /// gets its new version loaded; all that load are swapped in at once.
    pub fn reload_files(&self, changed: &HashSet<PathBuf>, since: Instant) -> ReloadReport {
        let _reloading = lock(&self.baseline);
        let set = self.current.load_full();
        let mut report = ReloadReport::default();
        let mut replaced: BTreeMap<String, Arc<LoadedPlugin>> = BTreeMap::new();
        for (name, running) in &set.plugins {
            let spec = running.spec();
            if !changed.contains(&spec.path) {
                continue;
            }
            let bytes = match std::fs::read(&spec.path) {
                Ok(bytes) => self.promoted_or(name, bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::warn!(plugin = %name, path = %spec.path.display(), version = %running.hash, "plugin file is gone; the running version stays until a new file appears");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(plugin = %name, path = %spec.path.display(), error = %e, "cannot read the changed plugin file; the running version stays");
                    continue;
                }
            };
            let digest: [u8; 32] = Sha256::digest(&bytes).into();
            let hash = short_hash(&digest);
            let already_refused = lock(&self.history)
                .get(name)
                .and_then(|h| h.refused.as_ref())
                .is_some_and(|r| r.hash == hash);
            if hash == running.hash || already_refused {
                continue; // the same content again (a touch, a second event)
            }
            let loaded = self
                .engine()
                .and_then(|e| e.load_digested(spec.clone(), &bytes, &digest));
            match loaded {
                Ok(loaded) => {
                    replaced.insert(name.clone(), Arc::new(loaded));
                }
                Err(error) => {
                    tracing::error!(plugin = %name, path = %spec.path.display(), refused = %hash, running = %running.hash, error = %error, "new plugin version refused; the running version stays");
                    self.note_refused(name, hash, &error);
                    report.refused.push((name.clone(), error.to_string()));
                }
            }
        }
        if replaced.is_empty() {
            return report;
        }
        self.current.store(Arc::new(set.with_replaced(&replaced)));
        let live_ms = since.elapsed().as_millis() as u64;
        for (name, new) in &replaced {
            let old = &set.plugins[name];
            tracing::info!(plugin = %name, from = %old.hash, to = %new.hash, loaded_from = new.source.as_str(), load_ms = new.load_took.as_millis() as u64, change_to_live_ms = live_ms, "plugin reloaded");
            self.note_loaded(new, Some(live_ms));
            report
                .swapped
                .push((name.clone(), old.hash.clone(), new.hash.clone()));
        }
        report
    }

    /// Re-reads the config file (blocking). Plugins and pipelines added,
    /// removed or changed take effect together; a config that does not
    /// parse, names a missing plugin, or has a plugin that fails to load is
    /// refused whole. Changed settings that need a restart are reported.
    pub fn reload_config(&self, since: Instant) -> Result<ReloadReport, ReloadError> {
        let Some(path) = self.config_path.clone() else {
            return Ok(ReloadReport::default());
        };
        match Config::load(&path) {
            Ok(new) => self.reload_with(new, &path.display().to_string(), since),
            Err(e) => self.refuse(&path.display().to_string(), e.into()),
        }
    }

    fn refuse(&self, origin: &str, reason: ReloadError) -> Result<ReloadReport, ReloadError> {
        tracing::error!(config = %origin, error = %reason, "config change refused; the running plugins and pipelines stay");
        *lock(&self.config_refusal) = Some(Refusal {
            hash: String::new(),
            at: SystemTime::now(),
            error: reason.to_string(),
        });
        Err(reason)
    }

    /// Puts the plugins and pipelines of `new` (from `origin`: the config
    /// file, or the cluster's bucket) in force, as
    /// [`PluginRegistry::reload_config`] does (blocking).
    pub fn reload_with(
        &self,
        new: Config,
        origin: &str,
        since: Instant,
    ) -> Result<ReloadReport, ReloadError> {
        let mut baseline = lock(&self.baseline);
        let path = origin;
        let refuse = |reason: ReloadError| self.refuse(origin, reason);
        for section in baseline.restart_needed(&new) {
            tracing::warn!(config = %path, %section, "changed in the config file; this setting takes effect only after a restart");
        }
        let old = self.current.load_full();
        let set = match self.build(&new, Some(&old)) {
            Ok(set) => set,
            Err(e) => return refuse(e.into()),
        };
        let mut report = ReloadReport::default();
        for (name, plugin) in &set.plugins {
            match old.plugins.get(name) {
                Some(o) if Arc::ptr_eq(o, plugin) => {}
                Some(o) => report
                    .swapped
                    .push((name.clone(), o.hash.clone(), plugin.hash.clone())),
                None => report
                    .swapped
                    .push((name.clone(), String::new(), plugin.hash.clone())),
            }
        }
        let removed: Vec<&String> = old
            .plugins
            .keys()
            .filter(|n| !set.plugins.contains_key(*n))
            .collect();
        let unchanged = report.swapped.is_empty()
            && removed.is_empty()
            && set.same_pipelines(&old)
            && set.version_header == old.version_header;
        *baseline = new;
        *lock(&self.config_refusal) = None;
        if unchanged {
            return Ok(report);
        }
        let pipelines: Vec<String> = set.pipelines.iter().map(|p| p.describe()).collect();
        self.current.store(Arc::new(set));
        tracing::info!(
            config = %path,
            changed = ?report.swapped.iter().map(|(n, _, _)| n.as_str()).collect::<Vec<_>>(),
            ?removed,
            ?pipelines,
            change_to_live_ms = since.elapsed().as_millis() as u64,
            "config reloaded"
        );
        Ok(report)
    }

    /// The last refused config change, if the file is still refused.
    pub fn config_refusal(&self) -> Option<(i64, String)> {
        lock(&self.config_refusal)
            .as_ref()
            .map(|r| (ms(r.at), r.error.clone()))
    }

    /// What `sluice plugin list` shows.
    pub fn status(&self) -> Vec<PluginStatus> {
        let set = self.current.load_full();
        let history = lock(&self.history);
        set.plugins
            .values()
            .map(|p| {
                let s = p.stats.snapshot();
                let h = history.get(p.name()).cloned().unwrap_or_default();
                let (log_lines, logs_dropped) = self.logs.counts(p.name());
                PluginStatus {
                    name: p.name().to_owned(),
                    path: p.spec().path.display().to_string(),
                    hash: p.hash.clone(),
                    loaded_at_ms: ms(p.loaded_at),
                    calls: s.calls,
                    messages: s.messages,
                    errors: s.errors,
                    busy_us: s.busy.as_micros() as u64,
                    p50_us: s.p50.as_micros() as u64,
                    p99_us: s.p99.as_micros() as u64,
                    last_error: s.last_error.as_ref().map(|(_, e)| e.clone()),
                    last_error_at_ms: s.last_error.as_ref().map(|(t, _)| ms(*t)),
                    loaded_from: p.source.as_str().to_owned(),
                    load_ms: p.load_took.as_millis() as u64,
                    versions: h.versions,
                    compiles: h.compiles,
                    cache_hits: h.cache_hits,
                    last_reload_ms: h.last_reload_ms,
                    refused: h.refused.map(|r| RefusedVersion {
                        hash: r.hash,
                        at_ms: ms(r.at),
                        error: r.error,
                    }),
                    node: None,
                    log_lines,
                    logs_dropped,
                }
            })
            .collect()
    }
}
