//! `sluice.toml`: every setting of the broker, each with a default.
//! Unknown keys and bad values stop start-up with an error that names the
//! key, so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Largest memory any plugin instance may have (the pooling allocator
/// reserves address space for this per slot); per-plugin caps are lower.
pub const MAX_PLUGIN_MEMORY: usize = 512 * 1024 * 1024;

/// What a failing stage does to its batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
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

/// Checks that `hash` is an argon2 hash string the broker can verify
/// tokens against.
pub fn check_token_hash(hash: &str) -> Result<(), String> {
    let parsed = argon2::password_hash::PasswordHash::new(hash).map_err(|e| e.to_string())?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(format!("algorithm {} is not argon2", parsed.algorithm));
    }
    Ok(())
}

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
    /// Directory of the config file: relative plugin paths start here.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
    /// The config file this was read from (watched for changes).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[admin]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Serve `/metrics` (Prometheus) and `/healthz` over plain HTTP.
    pub enabled: bool,
    /// Where (keep it on loopback or a private interface: it has no auth).
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// Whether clients must authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Development: anyone who can reach the port may do everything.
    None,
    /// Every client authenticates with a token or a client certificate and
    /// may do what its principal allows.
    Required,
}

/// `[auth]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `"none"` or `"required"`. Unset: `required` if any principal or a
    /// client CA is configured, else `none`.
    pub mode: Option<AuthMode>,
    /// PEM file of the CA(s) that issue client certificates (mutual TLS).
    /// A client certificate's subject common name (CN) names its principal.
    pub client_ca: Option<PathBuf>,
    /// `[[auth.principal]]`: the identities the broker knows.
    #[serde(rename = "principal")]
    pub principals: Vec<PrincipalConfig>,
}

impl AuthConfig {
    /// The mode in force.
    pub fn effective_mode(&self) -> AuthMode {
        self.mode
            .unwrap_or(if self.principals.is_empty() && self.client_ca.is_none() {
                AuthMode::None
            } else {
                AuthMode::Required
            })
    }
}

/// One `[[auth.principal]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalConfig {
    /// The principal's name (logs, metrics; a client certificate's CN).
    pub name: String,
    /// The argon2 hash of the principal's token (`sluice token hash`).
    /// Without it the principal can only authenticate by certificate.
    #[serde(default)]
    pub token_hash: Option<String>,
    /// Topics or patterns it may publish to (`*` one token, `>` the rest).
    #[serde(default)]
    pub publish: Vec<String>,
    /// Patterns it may subscribe to, consume as a group, or fetch from. A
    /// subscription's pattern must lie wholly inside one of these.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Admin rights: `"topics"` (create, delete), `"groups"` (list, info,
    /// reset), `"plugins"` (status), or `"*"` for all.
    #[serde(default)]
    pub admin: Vec<String>,
    /// Connections open at once (default `limits.max_connections_per_principal`).
    #[serde(default)]
    pub max_connections: Option<usize>,
}

/// The admin rights a principal can hold.
pub const ADMIN_RIGHTS: &[&str] = &["topics", "groups", "plugins", "*"];

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
}

impl Default for PluginRuntimeConfig {
    fn default() -> Self {
        PluginRuntimeConfig {
            watch: true,
            debounce: Duration::from_millis(20),
            version_header: false,
        }
    }
}

/// One `[[plugin]]`.
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// QUIC listen address.
    pub listen: SocketAddr,
    /// Where topics, group state and the development certificate live.
    pub data_dir: PathBuf,
    /// PEM certificate chain. With `key`; without both, a self-signed
    /// certificate is created in `<data_dir>/tls/` at first start.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 4433)),
            data_dir: PathBuf::from("./sluice-data"),
            cert: None,
            key: None,
        }
    }
}

/// When a publish counts as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// fsync before the ack; publishes waiting at the same moment share one
    /// fsync (group commit). Survives power loss.
    #[default]
    Always,
    /// fsync every `fsync_interval`; acked after the write reaches the OS.
    /// Survives a broker crash; power loss can lose the last interval.
    Interval,
    /// Never fsync (the OS writes back when it likes). Survives a broker
    /// crash only.
    Never,
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `always`, `interval` or `never`.
    pub fsync: FsyncPolicy,
    /// Period of the `interval` policy.
    #[serde(with = "humantime_serde")]
    pub fsync_interval: Duration,
    /// Default segment size in bytes.
    pub segment_bytes: u64,
    /// How often retention limits are applied.
    #[serde(with = "humantime_serde")]
    pub retention_check_interval: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            fsync: FsyncPolicy::Always,
            fsync_interval: Duration::from_millis(100),
            segment_bytes: 64 * 1024 * 1024,
            retention_check_interval: Duration::from_secs(30),
        }
    }
}

/// `[topics]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Create a topic on its first publish.
    pub auto_create: bool,
    /// Default retention of new topics.
    pub retention: RetentionConfig,
    /// Default de-duplication window of new topics: a publish whose message
    /// id was seen this recently is acked with the first offset and not
    /// stored again. "0s" turns it off.
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            auto_create: true,
            retention: RetentionConfig::default(),
            dedup_window: Duration::from_secs(120),
        }
    }
}

/// Retention limits; absent means unlimited.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Remove segments whose newest message is older than this.
    #[serde(with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// Keep about this many bytes per topic.
    pub max_bytes: Option<u64>,
    /// Keep about this many messages per topic.
    pub max_messages: Option<u64>,
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest frame body accepted, in bytes.
    pub max_frame_bytes: u32,
    /// Concurrent client connections.
    pub max_connections: usize,
    /// Connections open at once per authenticated principal (a principal's
    /// own `max_connections` overrides it). Not applied with `auth.mode = "none"`.
    pub max_connections_per_principal: usize,
    /// Subscriptions per connection.
    pub max_subscriptions_per_connection: usize,
    /// Consumer-group members (`consume`) per connection.
    pub max_consumers_per_connection: usize,
    /// Messages in one publish request.
    pub max_batch_messages: usize,
    /// Requests (publishes included) being processed at once per
    /// connection; more wait unread (QUIC flow control then slows that
    /// client). Also accepted as `max_in_flight_publishes`.
    #[serde(alias = "max_in_flight_publishes")]
    pub max_in_flight_requests: usize,
    /// Messages waiting for a slow live subscriber before new ones are
    /// dropped for it (counted, reported to the subscriber).
    pub subscriber_buffer_messages: usize,
    /// Time allowed from connection to Hello.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// A connection with no traffic for this long is closed (clients send
    /// keep-alives, so only dead peers hit it).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_frame_bytes: sluice_proto::DEFAULT_MAX_FRAME_BYTES,
            max_connections: 10_000,
            max_connections_per_principal: 1_000,
            max_subscriptions_per_connection: 1_000,
            max_consumers_per_connection: 100,
            max_batch_messages: 10_000,
            max_in_flight_requests: 1_024,
            subscriber_buffer_messages: 10_000,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(15),
        }
    }
}

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
        if self.plugin_runtime.watch != new.plugin_runtime.watch
            || self.plugin_runtime.debounce != new.plugin_runtime.debounce
        {
            changed.push("[plugins] watch/debounce");
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
        if self.plugin_runtime.debounce > Duration::from_secs(10) {
            return invalid("plugins.debounce must be at most 10s");
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
        if self.limits.handshake_timeout.is_zero() || self.limits.idle_timeout.is_zero() {
            return invalid("limits.handshake_timeout and limits.idle_timeout must be above zero");
        }
        self.validate_auth()?;
        self.validate_plugins()
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let auth = &self.auth;
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if auth.mode == Some(AuthMode::None)
            && (!auth.principals.is_empty() || auth.client_ca.is_some())
        {
            return invalid(format!(
                "auth.mode = \"none\" lets every client in with all rights, but {} [[auth.principal]] and {} client CA are configured; set auth.mode = \"required\" or remove them",
                auth.principals.len(),
                if auth.client_ca.is_some() { "a" } else { "no" }
            ));
        }
        if auth.effective_mode() == AuthMode::Required && auth.principals.is_empty() {
            return invalid(
                "auth.mode = \"required\" but no [[auth.principal]] is configured: no client could connect".into(),
            );
        }
        let mut names = std::collections::HashSet::new();
        for p in &auth.principals {
            if p.name.is_empty() || p.name.len() > 255 || p.name.chars().any(char::is_control) {
                return invalid(format!(
                    "auth.principal name {:?}: 1 to 255 printable characters",
                    p.name
                ));
            }
            if !names.insert(p.name.as_str()) {
                return invalid(format!("auth.principal {:?} is defined twice", p.name));
            }
            if let Some(hash) = &p.token_hash {
                if let Err(e) = check_token_hash(hash) {
                    return invalid(format!(
                        "auth.principal {:?}: token_hash is not an argon2 hash from `sluice token hash`: {e}",
                        p.name
                    ));
                }
            }
            for (field, patterns) in [("publish", &p.publish), ("subscribe", &p.subscribe)] {
                for pattern in patterns {
                    if let Err(e) = sluice_proto::Pattern::parse(pattern) {
                        return invalid(format!(
                            "auth.principal {:?}: {field} pattern {pattern:?}: {e}",
                            p.name
                        ));
                    }
                }
            }
            if let Some(right) = p.admin.iter().find(|r| !ADMIN_RIGHTS.contains(&r.as_str())) {
                return invalid(format!(
                    "auth.principal {:?}: admin right {right:?} is not one of {}",
                    p.name,
                    ADMIN_RIGHTS.join(", ")
                ));
            }
            if p.max_connections == Some(0) {
                return invalid(format!(
                    "auth.principal {:?}: max_connections must be above zero",
                    p.name
                ));
            }
        }
        Ok(())
    }

    fn validate_plugins(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for plugin in &self.plugins {
            if sluice_proto::validate_topic(&plugin.name).is_err() {
                return Err(ConfigError::Invalid(format!(
                    "plugin name {:?} is not valid (letters, digits, '_', '-', '.')",
                    plugin.name
                )));
            }
            if !names.insert(plugin.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "plugin {:?} is defined twice",
                    plugin.name
                )));
            }
            if plugin.timeout.is_zero() {
                return Err(ConfigError::Invalid(format!(
                    "plugin {:?}: timeout must be above zero",
                    plugin.name
                )));
            }
            let max = MAX_PLUGIN_MEMORY as u64;
            if plugin.memory_bytes < 1024 * 1024 || plugin.memory_bytes > max {
                return Err(ConfigError::Invalid(format!(
                    "plugin {:?}: memory_bytes must be between 1048576 and {max}",
                    plugin.name
                )));
            }
        }
        for pipeline in &self.pipelines {
            if let Err(e) = sluice_proto::Pattern::parse(&pipeline.topics) {
                return Err(ConfigError::Invalid(format!(
                    "pipeline topics {:?}: {e}",
                    pipeline.topics
                )));
            }
            if pipeline.stages.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "pipeline on {:?} has no stages",
                    pipeline.topics
                )));
            }
            if let Some(missing) = pipeline.stages.iter().find(|s| !names.contains(s.as_str())) {
                return Err(ConfigError::Invalid(format!(
                    "pipeline on {:?} names plugin {missing:?}, which no [[plugin]] defines",
                    pipeline.topics
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("", "<test>").unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:4433".parse().unwrap());
        assert_eq!(c.storage.fsync, FsyncPolicy::Always);
        assert!(c.topics.auto_create);
        assert_eq!(c.limits.max_frame_bytes, 1024 * 1024);
    }

    #[test]
    fn the_example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/sluice.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:4433".parse().unwrap());
    }

    #[test]
    fn durations_and_policies() {
        let c = Config::parse(
            "[storage]\nfsync = \"interval\"\nfsync_interval = \"250ms\"\n[topics.retention]\nmax_age = \"7days\"\nmax_messages = 10\n",
            "<test>",
        )
        .unwrap();
        assert_eq!(c.storage.fsync, FsyncPolicy::Interval);
        assert_eq!(c.storage.fsync_interval, Duration::from_millis(250));
        assert_eq!(
            c.topics.retention.max_age,
            Some(Duration::from_secs(7 * 86400))
        );
        assert_eq!(c.topics.retention.max_messages, Some(10));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("[server]\nlisten_addr = \"127.0.0.1:1\"\n", "<test>").unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
        let err = Config::parse("[storge]\n", "<test>").unwrap_err();
        assert!(err.to_string().contains("storge"), "{err}");
    }

    #[test]
    fn plugins_and_pipelines() {
        let c = Config::parse(
            "[[plugin]]\nname = \"r\"\npath = \"r.wasm\"\nconfig = { header = \"region\", n = 2 }\ntimeout = \"50ms\"\n\n[[pipeline]]\ntopics = \"orders.>\"\nstages = [\"r\"]\non_error = \"reject\"\n",
            "<test>",
        )
        .unwrap();
        assert_eq!(c.plugins[0].timeout, Duration::from_millis(50));
        assert_eq!(
            serde_json::to_string(&c.plugins[0].config).unwrap(),
            r#"{"header":"region","n":2}"#
        );
        assert_eq!(c.pipelines[0].on_error, OnError::Reject);
        let err = Config::parse(
            "[[pipeline]]\ntopics = \"a\"\nstages = [\"nope\"]\n",
            "<test>",
        )
        .unwrap_err();
        assert!(err.to_string().contains("\"nope\""), "{err}");
        let err = Config::parse(
            "[[plugin]]\nname = \"r\"\npath = \"r.wasm\"\n[[plugin]]\nname = \"r\"\npath = \"s.wasm\"\n",
            "<test>",
        )
        .unwrap_err();
        assert!(err.to_string().contains("defined twice"), "{err}");
    }

    #[test]
    fn bad_value_is_named() {
        let err = Config::parse("[storage]\nfsync = \"sometimes\"\n", "<test>").unwrap_err();
        assert!(err.to_string().contains("sometimes"), "{err}");
        let err = Config::parse("[server]\nlisten = \"nowhere\"\n", "<test>").unwrap_err();
        assert!(err.to_string().contains("listen"), "{err}");
        let err = Config::parse("[limits]\nmax_frame_bytes = 10\n", "<test>").unwrap_err();
        assert!(err.to_string().contains("max_frame_bytes"), "{err}");
    }
}
