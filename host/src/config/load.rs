//! Reading a config: the file, its TOML, the checks serde cannot make, and
//! which sections a reload could not apply without a restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::auth::AuthConfigError;
use super::plugins::{check_plugins, PluginConfigError};
use super::storage::FsyncPolicy;
use super::Config;

/// The longest key a plugin's state may be configured for.
pub const MAX_STATE_KEY_BYTES: usize = 4096;

/// The largest value a plugin's state may be configured for: one record
/// of the state journal, and one message in cluster mode (NATS's default
/// payload limit is 1 MiB).
pub const MAX_STATE_VALUE_BYTES: usize = 512 * 1024;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is invalid, has an unknown key or a bad value.
    #[error("invalid config {origin}: {message}")]
    Parse {
        /// File name or `<string>`.
        origin: String,
        /// The parser's message, naming the key and line.
        message: String,
    },
    /// The values parse but do not make sense together.
    #[error("invalid config: {0}")]
    Invalid(String),
    // The two below show their cause in the message, so it is not also
    // their source (an error chain would say it twice).
    /// `[auth]` is not usable.
    #[error("invalid config: {0}")]
    Auth(AuthConfigError),
    /// `[[plugin]]` or `[[pipeline]]` is not usable.
    #[error("invalid config: {0}")]
    Plugins(PluginConfigError),
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(&text, &path.display().to_string())?;
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        config.base_dir = path.parent().map(Path::to_path_buf);
        config.source = Some(path);
        Ok(config)
    }

    /// The sections of `new` that differ from `self` and only take effect
    /// at a restart (everything but plugins, pipelines and `[plugins]`).
    pub fn restart_needed(&self, new: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let differ =
            |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
        if differ(&self.server, &new.server) {
            changed.push("[server]");
        }
        if differ(&self.storage, &new.storage) {
            changed.push("[storage]");
        }
        if differ(&self.topics, &new.topics) {
            changed.push("[topics]");
        }
        if differ(&self.limits, &new.limits) {
            changed.push("[limits]");
        }
        if differ(&self.admin, &new.admin) {
            changed.push("[admin]");
        }
        if differ(&self.auth, &new.auth) {
            changed.push("[auth]");
        }
        if differ(&self.telemetry, &new.telemetry) {
            changed.push("[telemetry]");
        }
        if self.plugin_runtime.watch != new.plugin_runtime.watch
            || self.plugin_runtime.debounce != new.plugin_runtime.debounce
        {
            changed.push("[plugins] watch/debounce");
        }
        if self.plugin_runtime.log_rate != new.plugin_runtime.log_rate
            || self.plugin_runtime.log_burst != new.plugin_runtime.log_burst
        {
            changed.push("[plugins] log_rate/log_burst");
        }
        if self.plugin_runtime.state_limits() != new.plugin_runtime.state_limits() {
            changed.push("[plugins] state_max_key_bytes/state_max_value_bytes/state_max_bytes");
        }
        changed
    }

    /// Parses and checks TOML text.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.server.cert.is_some() != self.server.key.is_some() {
            return invalid("server.cert and server.key must be given together");
        }
        if self.limits.max_frame_bytes < 1024 {
            return invalid("limits.max_frame_bytes must be at least 1024");
        }
        if self.storage.segment_bytes < 1024 || self.storage.segment_bytes > u64::from(u32::MAX) {
            return invalid("storage.segment_bytes must be between 1024 and 4294967295");
        }
        if self.storage.fsync == FsyncPolicy::Interval && self.storage.fsync_interval.is_zero() {
            return invalid("storage.fsync_interval must be above zero");
        }
        if self.storage.retention_check_interval.is_zero() {
            return invalid("storage.retention_check_interval must be above zero");
        }
        if let Some(problem) = self.telemetry.problem() {
            return Err(ConfigError::Invalid(problem));
        }
        if self.plugin_runtime.debounce > Duration::from_secs(10) {
            return invalid("plugins.debounce must be at most 10s");
        }
        let state = self.plugin_runtime.state_limits();
        if state.max_key == 0 || state.max_value == 0 || state.max_bytes == 0 {
            return invalid("plugins.state_max_key_bytes, state_max_value_bytes and state_max_bytes must be above zero");
        }
        if state.max_key > MAX_STATE_KEY_BYTES || state.max_value > MAX_STATE_VALUE_BYTES {
            return invalid(&format!(
                "plugins.state_max_key_bytes is at most {MAX_STATE_KEY_BYTES} and state_max_value_bytes at most {MAX_STATE_VALUE_BYTES} (a value is one journal record here, one message in a cluster's bucket)"
            ));
        }
        if self.limits.max_in_flight_requests == 0
            || self.limits.max_connections == 0
            || self.limits.max_connections_per_principal == 0
            || self.limits.max_batch_messages == 0
        {
            return invalid(
                "limits.max_in_flight_requests, max_connections, max_connections_per_principal and max_batch_messages must be above zero",
            );
        }
        if self.limits.subscriber_buffer_messages == 0 {
            return invalid("limits.subscriber_buffer_messages must be above zero");
        }
        if self.storage.max_open_files == 0 {
            return invalid("storage.max_open_files must be above zero");
        }
        if self.storage.dedup_max_bytes < 4096 {
            return invalid("storage.dedup_max_bytes must be at least 4096");
        }
        if self.limits.handshake_timeout.is_zero() || self.limits.idle_timeout.is_zero() {
            return invalid("limits.handshake_timeout and limits.idle_timeout must be above zero");
        }
        if let Some(cluster) = &self.cluster {
            cluster.check().map_err(ConfigError::Invalid)?;
        }
        self.auth.check().map_err(ConfigError::Auth)?;
        check_plugins(&self.plugins, &self.pipelines).map_err(ConfigError::Plugins)
    }
}
