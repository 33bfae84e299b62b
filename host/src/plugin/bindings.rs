//! The one `bindgen!` of the host: Rust types and calls for the
//! `sluice:plugin/plugin` world in `wit/`, and the host side of its import.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "sluice:plugin/plugin",
});

// `self::` because the generated module `sluice` shares its name with
// this crate, which rustdoc puts in scope when it runs doc tests.
pub use self::sluice::plugin::types::{Messages, Outcome, Span};

use self::sluice::plugin::host::{Host, Level};
use super::state::StoreState;

/// The types interface has no functions to implement.
impl self::sluice::plugin::types::Host for StoreState {}

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
