//! The one `bindgen!` of the host: Rust types and calls for the
//! `sluice:plugin/plugin` world in `wit/` (0.1.2; components of 0.1.0 and
//! 0.1.1 link too, wasmtime matching imports by semver track), and the host
//! side of its imports: log lines go to the plugin's log (see
//! [`super::logs`]), state calls to its namespace (see [`super::kv`]).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "sluice:plugin/plugin",
});

// `self::` because the generated module `sluice` shares its name with
// this crate, which rustdoc puts in scope when it runs doc tests.
pub use self::sluice::plugin::host::Level;
pub use self::sluice::plugin::types::{Messages, Outcome, Span};

use self::sluice::plugin::host::Host;
use self::sluice::plugin::state::Error as StateError;
use super::kv::KvError;
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

/// A state error as the contract spells it.
fn to_wit(error: KvError) -> StateError {
    let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    match error {
        KvError::KeyTooLong { max, .. } => StateError::KeyTooLong(clamp(max)),
        KvError::ValueTooLarge { max, .. } => StateError::ValueTooLarge(clamp(max)),
        KvError::QuotaExceeded { max, .. } => StateError::QuotaExceeded(max),
        KvError::NotANumber => StateError::NotANumber,
        KvError::Unavailable(reason) => StateError::Unavailable(reason),
    }
}

impl self::sluice::plugin::state::Host for StoreState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, StateError> {
        self.kv.get(&key).map_err(to_wit)
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<(), StateError> {
        self.kv.set(&key, value, ttl_ms).map_err(to_wit)
    }

    fn delete(&mut self, key: String) -> Result<bool, StateError> {
        self.kv.delete(&key).map_err(to_wit)
    }

    fn incr(&mut self, key: String, delta: i64, ttl_ms: Option<u64>) -> Result<i64, StateError> {
        self.kv.incr(&key, delta, ttl_ms).map_err(to_wit)
    }
}
