//! The one `bindgen!` of the host: Rust types and calls for the
//! `sluice:plugin/plugin` world in `wit/`, and the host side of its import.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "sluice:plugin/plugin",
});

pub use sluice::plugin::types::{Messages, Outcome, Span};

use super::state::StoreState;
use sluice::plugin::host::{Host, Level};

/// The types interface has no functions to implement.
impl sluice::plugin::types::Host for StoreState {}

impl Host for StoreState {
    fn log(&mut self, level: Level, message: String) {
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}
