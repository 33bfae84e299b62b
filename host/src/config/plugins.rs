//! `[[plugin]]`, `[[pipeline]]` and `[plugins]`: the WebAssembly components
//! the broker loads, the stages they run in on publishes, and how reloads
//! behave.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Largest memory any plugin instance may have (the pooling allocator
/// reserves address space for this per slot); per-plugin caps are lower.
pub const MAX_PLUGIN_MEMORY: usize = 512 * 1024 * 1024;

/// What a failing stage does to its batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Store the batch's messages in the dead-letter topic, with the error.
    #[default]
    DeadLetter,
    /// Fail the publish of the batch's messages with the error.
    Reject,
    /// Drop the batch's messages.
    Drop,
    /// Skip the failing stage: the messages go on unchanged.
    Pass,
}

/// `[plugins]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginRuntimeConfig {
    /// Watch the plugin files and the config file and reload on change.
    pub watch: bool,
    /// A file still being written is acted on once it was quiet this long
    /// (editors and builds write in several steps). A file closed after
    /// writing or renamed into place is acted on at once.
    #[serde(with = "humantime_serde")]
    pub debounce: Duration,
    /// Stamp `sluice-plugin-versions` (`name@hash,...` of the stages that
    /// handled it) on every message a pipeline stores.
    pub version_header: bool,
    /// Log lines each plugin may write a second (to `_sluice.logs.<plugin>`);
    /// lines past it are dropped and counted. 0 drops them all.
    pub log_rate: u32,
    /// Log lines a plugin may write at once before `log_rate` applies.
    pub log_burst: u32,
    /// Longest key of a plugin's state, in bytes.
    pub state_max_key_bytes: usize,
    /// Largest value of a plugin's state, in bytes.
    pub state_max_value_bytes: usize,
    /// Most bytes one plugin's state may hold (keys, values and 32 bytes
    /// per entry).
    pub state_max_bytes: u64,
}

/// How much one plugin may keep in its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateLimits {
    /// Longest key, in bytes.
    pub max_key: usize,
    /// Largest value, in bytes.
    pub max_value: usize,
    /// Most bytes of keys, values and 32 bytes per entry in one namespace.
    pub max_bytes: u64,
}

impl Default for StateLimits {
    fn default() -> Self {
        StateLimits {
            max_key: 512,
            max_value: 64 * 1024,
            max_bytes: 16 * 1024 * 1024,
        }
    }
}

impl PluginRuntimeConfig {
    /// The limits of each plugin's state.
    pub fn state_limits(&self) -> StateLimits {
        StateLimits {
            max_key: self.state_max_key_bytes,
            max_value: self.state_max_value_bytes,
            max_bytes: self.state_max_bytes,
        }
    }
}

impl Default for PluginRuntimeConfig {
    fn default() -> Self {
        PluginRuntimeConfig {
            watch: true,
            debounce: Duration::from_millis(20),
            version_header: false,
            log_rate: 100,
            log_burst: 1000,
            state_max_key_bytes: StateLimits::default().max_key,
            state_max_value_bytes: StateLimits::default().max_value,
            state_max_bytes: StateLimits::default().max_bytes,
        }
    }
}

/// One `[[plugin]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Name used by pipelines and in logs.
    pub name: String,
    /// The component file (relative to the config file's directory).
    pub path: PathBuf,
    /// The plugin's own configuration, passed to its `init` as JSON.
    #[serde(default = "empty_table")]
    pub config: toml::Value,
    /// Deadline of one batch.
    #[serde(default = "default_plugin_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Memory cap of one instance, in bytes.
    #[serde(default = "default_plugin_memory")]
    pub memory_bytes: u64,
}

fn empty_table() -> toml::Value {
    toml::Value::Table(Default::default())
}

fn default_plugin_timeout() -> Duration {
    Duration::from_millis(100)
}

fn default_plugin_memory() -> u64 {
    64 * 1024 * 1024
}

/// One `[[pipeline]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Topic or pattern the pipeline applies to.
    pub topics: String,
    /// Plugin names, run in order.
    pub stages: Vec<String>,
    /// What a failing stage does to its batch.
    #[serde(default)]
    pub on_error: OnError,
}

/// Why `[[plugin]]` or `[[pipeline]]` was refused: what serde cannot check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginConfigError {
    /// A plugin name that is not a valid topic-style name.
    #[error("plugin name {0:?} is not valid (letters, digits, '_', '-', '.')")]
    BadName(String),
    /// Two plugins with one name.
    #[error("plugin {0:?} is defined twice")]
    Duplicate(String),
    /// `timeout = 0`: every call would time out.
    #[error("plugin {0:?}: timeout must be above zero")]
    ZeroTimeout(String),
    /// `memory_bytes` outside what an instance can have.
    #[error("plugin {plugin:?}: memory_bytes must be between 1048576 and {MAX_PLUGIN_MEMORY}")]
    MemoryOutOfRange {
        /// The plugin.
        plugin: String,
    },
    /// A pipeline's `topics` that is not a valid pattern.
    #[error("pipeline topics {topics:?}: {reason}")]
    BadPattern {
        /// The pattern.
        topics: String,
        /// What is wrong with it.
        reason: sluice_proto::SubjectError,
    },
    /// A pipeline with nothing to run.
    #[error("pipeline on {0:?} has no stages")]
    NoStages(String),
    /// A stage that names no `[[plugin]]`.
    #[error("pipeline on {topics:?} names plugin {plugin:?}, which no [[plugin]] defines")]
    UnknownStage {
        /// The pipeline's pattern.
        topics: String,
        /// The missing plugin.
        plugin: String,
    },
}

/// Checks what serde cannot: plugin names are valid and unique, limits are
/// in range, and every pipeline has a valid pattern and names only defined
/// plugins.
pub(super) fn check_plugins(
    plugins: &[PluginConfig],
    pipelines: &[PipelineConfig],
) -> Result<(), PluginConfigError> {
    let mut names = HashSet::new();
    for plugin in plugins {
        if sluice_proto::validate_topic(&plugin.name).is_err() {
            return Err(PluginConfigError::BadName(plugin.name.clone()));
        }
        if !names.insert(plugin.name.as_str()) {
            return Err(PluginConfigError::Duplicate(plugin.name.clone()));
        }
        if plugin.timeout.is_zero() {
            return Err(PluginConfigError::ZeroTimeout(plugin.name.clone()));
        }
        if plugin.memory_bytes < 1024 * 1024 || plugin.memory_bytes > MAX_PLUGIN_MEMORY as u64 {
            return Err(PluginConfigError::MemoryOutOfRange {
                plugin: plugin.name.clone(),
            });
        }
    }
    for pipeline in pipelines {
        sluice_proto::Pattern::parse(&pipeline.topics).map_err(|reason| {
            PluginConfigError::BadPattern {
                topics: pipeline.topics.clone(),
                reason,
            }
        })?;
        if pipeline.stages.is_empty() {
            return Err(PluginConfigError::NoStages(pipeline.topics.clone()));
        }
        if let Some(missing) = pipeline.stages.iter().find(|s| !names.contains(s.as_str())) {
            return Err(PluginConfigError::UnknownStage {
                topics: pipeline.topics.clone(),
                plugin: missing.clone(),
            });
        }
    }
    Ok(())
}
