//! Logging. Inside the broker a line goes to the plugin's log topic,
//! `_sluice.logs.<plugin>` (read it with `sluice plugin logs NAME`), with
//! the plugin's version and the batch's topic; a line about one message
//! (`info!(message: m, ...)`) also carries its trace id and offset. In
//! native tests a line goes to standard error and is kept for
//! [`crate::testing::take_logs`].
//!
//! ```
//! # fn handle(batch: &sluice_sdk::Batch) {
//! for message in batch.messages() {
//!     sluice_sdk::warn!(message: message, "no region header");
//! }
//! sluice_sdk::info!("saw {} messages", batch.len());
//! # }
//! ```

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the plugin handled.
    Warn,
    /// Something that failed.
    Error,
}

#[cfg(target_arch = "wasm32")]
fn host_level(level: Level) -> crate::__bindings::sluice::plugin::host::Level {
    use crate::__bindings::sluice::plugin::host;
    match level {
        Level::Trace => host::Level::Trace,
        Level::Debug => host::Level::Debug,
        Level::Info => host::Level::Info,
        Level::Warn => host::Level::Warn,
        Level::Error => host::Level::Error,
    }
}

/// One line written in a native test (see [`crate::testing::take_logs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its level.
    pub level: Level,
    /// The message of the batch it is about, if any.
    pub index: Option<usize>,
    /// The text.
    pub text: String,
}

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    static WRITTEN: std::cell::RefCell<Vec<LogLine>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Natively: prints the line and keeps it for the test.
#[cfg(not(target_arch = "wasm32"))]
fn keep(level: Level, index: Option<usize>, text: &str) {
    match index {
        Some(i) => eprintln!("[{level:?}] (message {i}) {text}"),
        None => eprintln!("[{level:?}] {text}"),
    }
    WRITTEN.with(|w| {
        w.borrow_mut().push(LogLine {
            level,
            index,
            text: text.to_owned(),
        })
    });
}

/// The lines written natively on this thread since the last call.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn take() -> Vec<LogLine> {
    WRITTEN.with(|w| std::mem::take(&mut *w.borrow_mut()))
}

/// Writes one line to the log. Prefer the macros ([`crate::info!`] ...).
pub fn log(level: Level, text: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::__bindings::sluice::plugin::host::log(host_level(level), text);
    #[cfg(not(target_arch = "wasm32"))]
    keep(level, None, text);
}

/// Writes one line about message `index` of the batch being handled.
/// Prefer the macros (`info!(message: m, ...)`).
pub fn log_for(level: Level, index: usize, text: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::__bindings::sluice::plugin::host::log_for_message(
        host_level(level),
        u32::try_from(index).unwrap_or(u32::MAX),
        text,
    );
    #[cfg(not(target_arch = "wasm32"))]
    keep(level, Some(index), text);
}

/// Logs at trace level, `format!` style; `message: m,` first makes the
/// line about message `m` of the batch.
#[macro_export]
macro_rules! trace {
    (message: $message:expr, $($arg:tt)+) => {
        $crate::log::log_for($crate::log::Level::Trace, ($message).index(), &format!($($arg)+))
    };
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Trace, &format!($($arg)*)) };
}

/// Logs at debug level, `format!` style (`message: m,` as in [`trace!`]).
#[macro_export]
macro_rules! debug {
    (message: $message:expr, $($arg:tt)+) => {
        $crate::log::log_for($crate::log::Level::Debug, ($message).index(), &format!($($arg)+))
    };
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Debug, &format!($($arg)*)) };
}

/// Logs at info level, `format!` style (`message: m,` as in [`trace!`]).
#[macro_export]
macro_rules! info {
    (message: $message:expr, $($arg:tt)+) => {
        $crate::log::log_for($crate::log::Level::Info, ($message).index(), &format!($($arg)+))
    };
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Info, &format!($($arg)*)) };
}

/// Logs at warn level, `format!` style (`message: m,` as in [`trace!`]).
#[macro_export]
macro_rules! warn {
    (message: $message:expr, $($arg:tt)+) => {
        $crate::log::log_for($crate::log::Level::Warn, ($message).index(), &format!($($arg)+))
    };
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Warn, &format!($($arg)*)) };
}

/// Logs at error level, `format!` style (`message: m,` as in [`trace!`]).
#[macro_export]
macro_rules! error {
    (message: $message:expr, $($arg:tt)+) => {
        $crate::log::log_for($crate::log::Level::Error, ($message).index(), &format!($($arg)+))
    };
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Error, &format!($($arg)*)) };
}
