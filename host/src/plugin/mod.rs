//! WebAssembly plugins inside the broker: the wasmtime host, loaded plugin
//! versions and the pipelines that run them on the publish path.
//!
//! Plugin calls are blocking (a sync wasmtime call with an epoch deadline).
//! A publish pipeline whose last run took under `pipeline::QUICK_RUN`
//! (200 µs) runs in place on the async worker, where handing the worker
//! over would cost more than the run; any other uses `block_in_place` on
//! the multi-threaded runtime (the worker's other tasks move to a fresh
//! worker first) and `spawn_blocking` elsewhere; delivery plugins use
//! `spawn_blocking`. A new or reloaded pipeline starts as slow, so a
//! plugin that spins holds one thread for at most its deadline and the
//! connection that published, not the runtime. What a quick run does
//! besides computing (a plugin's stdout, its state writes) must not wait
//! on the runtime: see `engine::link_wasi_without_tokio` and
//! `kv::cluster`.
//!
//! # Layout
//!
//! - [`bindings`] - the one `bindgen!` and the host's `log` functions.
//! - [`engine`] - the shared engine, linker and epoch ticker.
//! - [`error`] - why loading or calling a plugin failed.
//! - [`instance`] - one loaded plugin version, its instance pool, and how
//!   the engine loads one.
//! - [`answer`] - a plugin's answer checked, its replacements as records
//!   (one place for publish and delivery plugins and `sluice plugin test`).
//! - [`pipeline`] - stages on a topic pattern and what they do to messages.
//! - [`delivery`] - plugins on a subscription's deliveries.
//! - [`distribution`] - where a deployed version goes; whose status is shown.
//! - [`stats`] - per-plugin counters and latency.
//! - [`logs`] - plugins' log lines, rate-limited, to `_sluice.logs.<plugin>`.
//! - [`kv`] - plugins' key-value state, durable, one namespace per plugin.
//! - [`cache`] - compiled components by content hash, in memory and on disk.
//! - [`registry`] - the set in force and how reloads and rollouts swap it.
//! - [`rollout`] - a candidate version in shadow or canary mode.
//! - [`watch`] - file watching and debouncing that drive reloads.

pub mod answer;
pub mod bindings;
pub mod cache;
pub mod delivery;
pub mod distribution;
pub mod engine;
pub mod error;
pub mod instance;
pub mod kv;
mod log_stream;
pub mod logs;
pub mod pipeline;
pub mod registry;
pub mod rollout;
mod state;
pub mod stats;
pub mod watch;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use sluice_proto::Pattern;

pub use distribution::{Distribution, LocalDistribution};
pub use engine::PluginEngine;
pub use error::PluginError;
pub use instance::{LoadedPlugin, PluginSpec};
pub use pipeline::{Destination, Disposition, OnError, Pipeline};
pub use registry::{PluginRegistry, ReloadReport};
pub use rollout::Rollout;

use crate::config::Config;

/// Every loaded plugin and pipeline: one immutable generation, replaced
/// whole by a reload (see [`registry`]).
#[derive(Debug, Default)]
pub struct PluginSet {
    /// Plugins by name.
    pub plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    /// Pipelines in config order; the first whose pattern matches a topic runs.
    pub pipelines: Vec<Pipeline>,
    /// Stamp `sluice-plugin-versions` on what pipelines store.
    pub version_header: bool,
    /// Rollouts by plugin name (running, or stopped by an automatic
    /// rollback and kept until rolled back or replaced).
    pub rollouts: BTreeMap<String, Arc<Rollout>>,
}

/// A pipeline over `stages`, with the rollouts of their plugins.
fn pipeline(
    pattern: Pattern,
    stages: Vec<Arc<LoadedPlugin>>,
    on_error: OnError,
    version_header: bool,
    rollouts: &BTreeMap<String, Arc<Rollout>>,
) -> Pipeline {
    Pipeline {
        rollouts: stages
            .iter()
            .map(|s| rollouts.get(s.name()).cloned())
            .collect(),
        pattern,
        stages,
        on_error,
        version_header,
        last_run: Default::default(),
    }
}

/// The spec of plugin `name` from the config, with its path made absolute
/// (relative paths start at the config file's directory).
pub fn spec_from_config(config: &Config, plugin: &crate::config::PluginConfig) -> PluginSpec {
    let path = if plugin.path.is_absolute() {
        plugin.path.clone()
    } else {
        config
            .base_dir
            .as_deref()
            .unwrap_or(Path::new("."))
            .join(&plugin.path)
    };
    PluginSpec {
        name: plugin.name.clone(),
        path: watch::normalize(&std::path::absolute(&path).unwrap_or(path)),
        config_json: serde_json::to_string(&plugin.config).unwrap_or_else(|_| "{}".into()),
        timeout: plugin.timeout,
        memory_bytes: plugin.memory_bytes as usize,
    }
}

impl PluginSet {
    /// The pipelines of `config` over loaded `plugins` (the config is
    /// validated: every stage names one of them), with those of `rollouts`
    /// whose plugin is still there.
    pub fn assemble(
        config: &Config,
        plugins: BTreeMap<String, Arc<LoadedPlugin>>,
        rollouts: &BTreeMap<String, Arc<Rollout>>,
    ) -> PluginSet {
        let version_header = config.plugin_runtime.version_header;
        let rollouts: BTreeMap<String, Arc<Rollout>> = rollouts
            .iter()
            .filter(|(name, _)| plugins.contains_key(*name))
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        let pipelines = config
            .pipelines
            .iter()
            // Config validation refuses a bad pattern; none is skipped here.
            .filter_map(|p| {
                let stages = p
                    .stages
                    .iter()
                    .filter_map(|s| plugins.get(s).cloned())
                    .collect();
                let pattern = Pattern::parse(&p.topics).ok()?;
                Some(pipeline(
                    pattern,
                    stages,
                    p.on_error,
                    version_header,
                    &rollouts,
                ))
            })
            .collect();
        PluginSet {
            plugins,
            pipelines,
            version_header,
            rollouts,
        }
    }

    /// This set with `rollouts` in place of its own.
    pub fn with_rollouts(&self, rollouts: BTreeMap<String, Arc<Rollout>>) -> PluginSet {
        self.rebuilt(&BTreeMap::new(), rollouts)
    }

    /// This set with some plugins replaced by new versions, in every
    /// pipeline that uses them.
    pub fn with_replaced(&self, new: &BTreeMap<String, Arc<LoadedPlugin>>) -> PluginSet {
        self.rebuilt(new, self.rollouts.clone())
    }

    fn rebuilt(
        &self,
        new: &BTreeMap<String, Arc<LoadedPlugin>>,
        rollouts: BTreeMap<String, Arc<Rollout>>,
    ) -> PluginSet {
        let pick = |p: &Arc<LoadedPlugin>| new.get(p.name()).unwrap_or(p).clone();
        PluginSet {
            plugins: self
                .plugins
                .iter()
                .map(|(name, p)| (name.clone(), pick(p)))
                .collect(),
            pipelines: self
                .pipelines
                .iter()
                .map(|p| {
                    let stages = p.stages.iter().map(pick).collect();
                    pipeline(
                        p.pattern.clone(),
                        stages,
                        p.on_error,
                        p.version_header,
                        &rollouts,
                    )
                })
                .collect(),
            version_header: self.version_header,
            rollouts,
        }
    }

    /// True when both sets have the same pipelines over the same versions.
    pub fn same_pipelines(&self, other: &PluginSet) -> bool {
        self.pipelines.len() == other.pipelines.len()
            && self.pipelines.iter().zip(&other.pipelines).all(|(a, b)| {
                a.pattern == b.pattern
                    && a.on_error == b.on_error
                    && a.stages.len() == b.stages.len()
                    && a.stages
                        .iter()
                        .zip(&b.stages)
                        .all(|(x, y)| Arc::ptr_eq(x, y))
            })
    }

    /// The pipeline of a topic, if one matches.
    pub fn pipeline_for(&self, topic: &str) -> Option<&Pipeline> {
        self.pipelines.iter().find(|p| p.pattern.matches(topic))
    }
}

/// A registry with `plugins/dist/test_hostile.wasm` loaded as plugin
/// `hostile` in `mode`, and the directory it caches compiled code in.
#[cfg(test)]
pub(crate) fn hostile(mode: &str) -> (std::sync::Arc<registry::PluginRegistry>, tempfile::TempDir) {
    fixture("test_hostile.wasm", &format!("{{ mode = {mode:?} }}"))
}

/// A registry with the fixture `file` of `plugins/dist/` loaded as plugin
/// `hostile`, with `config` (a TOML inline table).
#[cfg(test)]
pub(crate) fn fixture(
    file: &str,
    config: &str,
) -> (std::sync::Arc<registry::PluginRegistry>, tempfile::TempDir) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/dist")
        .join(file);
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask plugins` first",
        path.display()
    );
    let dir = tempfile::TempDir::new().expect("temp dir");
    let text = format!(
        "[server]\ndata_dir = {:?}\n[[plugin]]\nname = \"hostile\"\npath = {:?}\nconfig = {config}\n",
        dir.path().display().to_string(),
        path.display().to_string(),
    );
    let config = crate::config::Config::parse(&text, "test").expect("valid config");
    let registry = registry::PluginRegistry::load(&config).expect("the fixture loads");
    (std::sync::Arc::new(registry), dir)
}
