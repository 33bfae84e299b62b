//! [`PluginError`]: why loading or calling a plugin failed. Its own module
//! because the engine, the instances and their statistics all speak it.

use std::path::PathBuf;
use std::time::Duration;

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
    /// No loaded plugin has that name.
    #[error("no plugin {plugin:?} is configured (deploy replaces the component of a [[plugin]]; add it to the config first)")]
    Unknown {
        /// The name asked for.
        plugin: String,
    },
    /// The new component could not be stored.
    #[error("plugin {plugin}: cannot store the new version: {reason}")]
    Store {
        /// The plugin.
        plugin: String,
        /// Why.
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
    /// What a batch wrote to the plugin's state could not be made durable
    /// (the batch fails: its messages follow the pipeline's `on_error`).
    #[error("plugin {plugin}: its state could not be made durable: {reason}")]
    State {
        /// The plugin.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// A rollout request that cannot be done as asked.
    #[error("plugin {plugin}: {reason}")]
    Rollout {
        /// The plugin.
        plugin: String,
        /// Why.
        reason: String,
    },
}
