//! What the nodes of a cluster share beyond topics and groups: the
//! plugins and pipelines ([`plugins`]). Builds on [`crate::nats`] and the
//! plugin host; nothing below it calls up here.
//!
//! # Layout
//!
//! - [`plugins`]: `[[plugin]]`/`[[pipeline]]` in a bucket, wasm in an object
//!   store, copied to and reloaded on every node.
//! - [`nodes`]: each node's plugin status, and the cluster's
//!   [`crate::plugin::Distribution`] (deploy to every node, list them all).

pub mod nodes;
pub mod plugins;

pub use nodes::ClusterDistribution;
pub use plugins::{SharedPlugins, SharedPluginsError};
