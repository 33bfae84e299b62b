//! The one `bindgen!` of the host: Rust types and calls for the
//! `sluice:plugin/plugin` world in `wit/` (0.1.1; components of 0.1.0
//! link too, wasmtime matching imports by semver track), and the host side
//! of its import: lines go to the plugin's log (see [`super::logs`]).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "sluice:plugin/plugin",
});

// `self::` because the generated module `sluice` shares its name with
// this crate, which rustdoc puts in scope when it runs doc tests.
pub use self::sluice::plugin::host::Level;
pub use self::sluice::plugin::types::{Messages, Outcome, Span};

use self::sluice::plugin::host::Host;
use super::state::StoreState;

/// The types interface has no functions to implement.
impl self::sluice::plugin::types::Host for StoreState {}

impl Host for StoreState {
    fn log(&mut self, level: Level, message: String) {
        self.log.line(level_name(level), "log", None, message);
    }

    fn log_for_message(&mut self, level: Level, index: u32, message: String) {
        self.log
            .line(level_name(level), "log", Some(index), message);
    }
}

/// A level's name in log entries.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}
