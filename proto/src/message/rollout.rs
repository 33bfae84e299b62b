//! Rolling a new plugin version out safely: beside the current one in
//! shadow mode (its outcomes compared, never acted on), or on a share of
//! live traffic as a canary that is rolled back when it does worse than
//! the current version. [`RolloutRequest`] asks, [`RolloutStatus`] answers.

use serde::{Deserialize, Serialize};

/// What a rollout request asks of plugin `name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RolloutRequest {
    /// Run `wasm` beside the current version on the same batches; compare.
    Shadow {
        /// The plugin.
        name: String,
        /// The candidate component.
        wasm: bytes::Bytes,
    },
    /// Give `wasm` a share of live traffic, rolled back past `plan`'s limits.
    Canary {
        /// The plugin.
        name: String,
        /// The candidate component.
        wasm: bytes::Bytes,
        /// The share and the limits.
        plan: CanaryPlan,
    },
    /// Make the candidate the current version (the zero-loss swap of a hot
    /// reload), and remember it across restarts.
    Promote {
        /// The plugin.
        name: String,
    },
    /// End the rollout: the current version keeps all traffic. Ends a
    /// shadow too (`sluice plugin shadow NAME --stop`).
    Rollback {
        /// The plugin.
        name: String,
    },
    /// The rollout's status, comparisons and samples.
    Status {
        /// The plugin.
        name: String,
    },
}

/// How a canary splits traffic, and when it is rolled back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryPlan {
    /// Percent of messages (0 to 100) the canary handles.
    pub percent: f64,
    /// Split by key hash (one key always gets one version); messages with
    /// no key are split by percentage.
    pub by_key: bool,
    /// Roll back when the canary's share of messages in failed batches
    /// (traps, timeouts, errors) is this much above the current version's
    /// (a fraction: 0.01 is one percentage point).
    pub max_error_rate: f64,
    /// Roll back when the canary's share of rejected and dead-lettered
    /// messages is this much above the current version's (a fraction).
    pub max_reject_rate: f64,
    /// Roll back when the canary's p99 batch latency is this much above the
    /// current version's (µs); none: latency is not checked.
    pub max_p99_us: Option<u64>,
    /// The window the rates are measured over (ms).
    pub window_ms: u64,
    /// Messages the canary must have handled in the window before it is
    /// judged.
    pub min_messages: u64,
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RolloutState {
    /// Shadow or canary, running.
    Running,
    /// The candidate became the current version.
    Promoted,
    /// Ended by hand, or stopped automatically (see `reason`).
    RolledBack,
}

/// A rollout of one plugin: the answer to every [`RolloutRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutStatus {
    /// The plugin.
    pub name: String,
    /// `shadow` or `canary`.
    pub mode: String,
    /// Where it stands.
    pub state: RolloutState,
    /// The version that keeps the rest of the traffic (12 hex digits).
    pub current: String,
    /// The candidate version.
    pub candidate: String,
    /// When it started (ms since the Unix epoch).
    pub started_at_ms: i64,
    /// When it ended, if it did.
    #[serde(default)]
    pub ended_at_ms: Option<i64>,
    /// Why it was rolled back, for an automatic rollback.
    #[serde(default)]
    pub reason: Option<String>,
    /// A canary's plan.
    #[serde(default)]
    pub plan: Option<CanaryPlan>,
    /// A shadow's comparison with the current version.
    #[serde(default)]
    pub diff: Option<ShadowDiff>,
    /// A canary's window, per version.
    #[serde(default)]
    pub canary: Option<CanaryWindow>,
}

/// What a shadow version did differently.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowDiff {
    /// Messages both versions handled.
    pub compared: u64,
    /// Of those, with the same outcome.
    pub agreed: u64,
    /// Differences by kind: `drop` (one dropped, the other kept), `route`
    /// (different destinations), `replace` (different replacement bytes),
    /// `reject`, `dead_letter` (one did, the other not), `error` (one
    /// version's call failed).
    pub differences: std::collections::BTreeMap<String, u64>,
    /// Messages not compared because the shadow fell behind.
    pub skipped: u64,
    /// The last differing messages (at most 20), oldest first.
    pub samples: Vec<DiffSample>,
}

/// One message the versions disagreed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffSample {
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
    /// The topic it was published to.
    pub topic: String,
    /// The kind of difference.
    pub kind: String,
    /// Its key (lossy UTF-8), if any.
    #[serde(default)]
    pub key: Option<String>,
    /// Its payload's first 256 bytes (lossy UTF-8).
    pub payload: String,
    /// What the current version did.
    pub current: String,
    /// What the shadow version would have done.
    pub candidate: String,
}

/// A canary's measurements over its window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CanaryWindow {
    /// The current version's.
    pub current: VersionWindow,
    /// The canary's.
    pub candidate: VersionWindow,
}

/// One version's measurements over a canary's window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionWindow {
    /// Messages handled.
    pub messages: u64,
    /// Of those, in batches whose call failed.
    pub failed: u64,
    /// Of those, rejected or dead-lettered.
    pub rejected: u64,
    /// p99 batch latency (µs, bucket upper bound).
    pub p99_us: u64,
}
