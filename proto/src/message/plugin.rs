//! What the broker reports about its loaded plugins: counters, latency,
//! the last error, and how each version was loaded or why it was refused.

use serde::{Deserialize, Serialize};

/// What the broker knows about one loaded plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginStatus {
    /// Its name in the config.
    pub name: String,
    /// The component file.
    pub path: String,
    /// First 12 hex digits of the component's SHA-256.
    pub hash: String,
    /// When this version was loaded (ms since the Unix epoch).
    pub loaded_at_ms: i64,
    /// `handle` calls.
    pub calls: u64,
    /// Messages handled.
    pub messages: u64,
    /// Calls that failed (trap, timeout, out of memory, wrong outcomes).
    pub errors: u64,
    /// Time spent in calls (µs).
    pub busy_us: u64,
    /// Median batch latency (µs, bucket upper bound).
    pub p50_us: u64,
    /// 99th percentile batch latency (µs, bucket upper bound).
    pub p99_us: u64,
    /// The last error.
    #[serde(default)]
    pub last_error: Option<String>,
    /// When it happened (ms since the Unix epoch).
    #[serde(default)]
    pub last_error_at_ms: Option<i64>,
    /// `compiled` (this version was compiled when loaded) or `cached` (its
    /// compiled form came from the cache: no compile).
    #[serde(default)]
    pub loaded_from: String,
    /// Time to load this version: compile or cache look-up, and `init` (ms).
    #[serde(default)]
    pub load_ms: u64,
    /// Versions of this plugin taken into service since the broker started.
    #[serde(default)]
    pub versions: u64,
    /// Of those, how many were compiled.
    #[serde(default)]
    pub compiles: u64,
    /// Of those, how many came from the compiled-component cache.
    #[serde(default)]
    pub cache_hits: u64,
    /// Last hot reload: file change to the new version taking traffic (ms).
    #[serde(default)]
    pub last_reload_ms: Option<u64>,
    /// The last version refused (bad file, wrong world, failed `init`),
    /// while the running one stays.
    #[serde(default)]
    pub refused: Option<RefusedVersion>,
    /// In cluster mode, the node this status is of; `None` on one machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Log lines the plugin wrote to `_sluice.logs.<plugin>` (all versions).
    #[serde(default)]
    pub log_lines: u64,
    /// Log lines dropped past `[plugins] log_rate` or a full queue.
    #[serde(default)]
    pub logs_dropped: u64,
}

/// A plugin version the broker refused to load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedVersion {
    /// First 12 hex digits of the refused file's SHA-256.
    pub hash: String,
    /// When it was refused (ms since the Unix epoch).
    pub at_ms: i64,
    /// Why.
    pub error: String,
}
