//! WebAssembly plugins inside the broker: the wasmtime host, loaded plugin
//! versions and the pipelines that run them on the publish path.
//!
//! Plugin calls are blocking (a sync wasmtime call with an epoch deadline),
//! so the broker makes them on tokio's blocking pool, never on an async
//! worker: a slow plugin holds a blocking thread for at most its deadline
//! and the connection that published, not the runtime.
//!
//! # Layout
//!
//! - [`bindings`] - the one `bindgen!` and the host's `log`.
//! - [`engine`] - the shared engine, linker and epoch ticker.
//! - [`instance`] - one loaded plugin version and its instance pool.
//! - [`pipeline`] - stages on a topic pattern and what they do to messages.
//! - [`delivery`] - plugins on a subscription's deliveries.
//! - [`stats`] - per-plugin counters and latency.

pub mod bindings;
pub mod delivery;
pub mod engine;
pub mod instance;
mod log_stream;
pub mod pipeline;
mod state;
pub mod stats;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use sluice_proto::{Pattern, PluginStatus};

pub use engine::PluginEngine;
pub use instance::{LoadedPlugin, PluginError, PluginSpec};
pub use pipeline::{Destination, Disposition, OnError, Pipeline};

use crate::config::Config;

/// Every loaded plugin and pipeline.
#[derive(Debug, Default)]
pub struct PluginSet {
    /// Plugins by name.
    pub plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    /// Pipelines in config order; the first whose pattern matches a topic runs.
    pub pipelines: Vec<Pipeline>,
}

/// The spec of plugin `name` from the config, with its path made absolute
/// against the config file's directory.
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
        path,
        config_json: serde_json::to_string(&plugin.config).unwrap_or_else(|_| "{}".into()),
        timeout: plugin.timeout,
        memory_bytes: plugin.memory_bytes as usize,
    }
}

impl PluginSet {
    /// Loads every `[[plugin]]` and builds every `[[pipeline]]` (blocking:
    /// compiles components). Any failure refuses the whole set.
    pub fn load(engine: &PluginEngine, config: &Config) -> Result<PluginSet, PluginError> {
        let mut plugins = BTreeMap::new();
        for plugin in &config.plugins {
            let spec = spec_from_config(config, plugin);
            let started = std::time::Instant::now();
            let loaded = Arc::new(engine.load(spec)?);
            tracing::info!(
                plugin = %plugin.name,
                hash = %loaded.hash,
                path = %loaded.spec().path.display(),
                took_ms = started.elapsed().as_millis() as u64,
                "plugin loaded"
            );
            plugins.insert(plugin.name.clone(), loaded);
        }
        let pipelines = config
            .pipelines
            .iter()
            .map(|p| Pipeline {
                // Validated with the config.
                pattern: Pattern::parse(&p.topics)
                    .unwrap_or_else(|_| Pattern::parse(">").expect("> parses")),
                stages: p
                    .stages
                    .iter()
                    .filter_map(|s| plugins.get(s).cloned())
                    .collect(),
                on_error: p.on_error,
            })
            .collect();
        Ok(PluginSet { plugins, pipelines })
    }

    /// The pipeline of a topic, if one matches.
    pub fn pipeline_for(&self, topic: &str) -> Option<&Pipeline> {
        self.pipelines.iter().find(|p| p.pattern.matches(topic))
    }

    /// What `sluice plugin list` shows.
    pub fn status(&self) -> Vec<PluginStatus> {
        let ms = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
        };
        self.plugins
            .values()
            .map(|p| {
                let s = p.stats.snapshot();
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
                }
            })
            .collect()
    }
}
