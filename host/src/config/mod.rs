//! `sluice.toml`: every setting of the broker, each with a default.
//! Unknown keys and bad values stop start-up with an error that names the
//! key, so a typo never silently falls back to a default.
//!
//! This module is a leaf: it knows nothing of the rest of the broker, which
//! reads its settings from here.
//!
//! # Layout
//!
//! - [`Config`] (here) - the whole file, one field per section.
//! - `server` - `[server]`, `[admin]` and `[limits]`: where the broker
//!   listens and how much each client may use.
//! - `storage` - `[storage]` and `[topics]`: the log on disk and the
//!   defaults of new topics.
//! - `auth` - `[auth]` and its principals.
//! - `cluster` - `[cluster]`: cluster mode over NATS JetStream.
//! - `plugins` - `[[plugin]]`, `[[pipeline]]` and `[plugins]`.
//! - `telemetry` - `[telemetry]`: OpenTelemetry export and the
//!   per-message event record.
//! - `load` - reading, parsing and checking a file, and what a reload
//!   changes.

mod auth;
mod cluster;
mod load;
mod plugins;
mod server;
mod storage;
mod telemetry;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use serde::Deserialize;

pub use auth::{
    check_token_hash, AuthConfig, AuthConfigError, AuthMode, PrincipalConfig, TokenHashError,
    ADMIN_RIGHTS,
};
pub use cluster::{ClusterConfig, DEFAULT_REPLICAS};
pub use load::ConfigError;
pub use plugins::{
    OnError, PipelineConfig, PluginConfig, PluginConfigError, PluginRuntimeConfig, StateLimits,
    MAX_PLUGIN_MEMORY,
};
pub use server::{AdminConfig, LimitsConfig, ServerConfig};
pub use storage::{
    FsyncPolicy, RetentionConfig, StorageConfig, TopicsConfig, DEFAULT_MAX_OPEN_FILES,
};
pub use telemetry::{RecordConfig, TelemetryConfig};

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Network and TLS.
    pub server: ServerConfig,
    /// The log on disk.
    pub storage: StorageConfig,
    /// Topic defaults.
    pub topics: TopicsConfig,
    /// Resource limits.
    pub limits: LimitsConfig,
    /// `[[plugin]]`: WebAssembly components the broker loads.
    #[serde(rename = "plugin")]
    pub plugins: Vec<PluginConfig>,
    /// `[[pipeline]]`: plugin stages run on publishes to matching topics.
    #[serde(rename = "pipeline")]
    pub pipelines: Vec<PipelineConfig>,
    /// `[admin]`: the HTTP listener for `/metrics` and `/healthz`.
    pub admin: AdminConfig,
    /// `[auth]`: who may connect and what each principal may do.
    pub auth: AuthConfig,
    /// `[plugins]`: hot reload and version stamping.
    #[serde(rename = "plugins")]
    pub plugin_runtime: PluginRuntimeConfig,
    /// `[cluster]`: present, the node runs in cluster mode over NATS
    /// JetStream and keeps no state of its own.
    pub cluster: Option<ClusterConfig>,
    /// `[telemetry]`: spans of messages over OTLP, and the event record
    /// behind `sluice trace`.
    pub telemetry: TelemetryConfig,
    /// Directory of the config file: relative plugin paths start here.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
    /// The config file this was read from (watched for changes).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}
