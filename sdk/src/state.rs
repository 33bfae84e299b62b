//! State kept by the broker for your plugin: a durable key-value store,
//! one namespace per plugin, shared by all its versions and kept across
//! reloads and restarts.
//!
//! ```
//! use std::time::Duration;
//! use sluice_sdk::state;
//!
//! # fn handle() -> Result<(), state::StateError> {
//! // At most 100 messages a minute per customer.
//! let seen = state::incr_with_ttl("customer:42", 1, Duration::from_secs(60))?;
//! if seen > 100 {
//!     // ...drop or dead-letter it
//! }
//! state::set("last-order", b"1234")?;
//! assert_eq!(state::get("last-order")?.as_deref(), Some(&b"1234"[..]));
//! # Ok(())
//! # }
//! # handle().unwrap();
//! ```
//!
//! What you can count on:
//! - **Within a batch and across batches on one broker**, you read your own
//!   writes at once; each call is atomic. A sequence of calls is not:
//!   batches of other topics may run at the same time on other instances,
//!   so prefer [`incr`] to a `get` then `set`.
//! - **Durability**: a call that returned `Ok` is on disk (a broker killed
//!   right after keeps it) or, in cluster mode, in the cluster's bucket
//!   before any message of the batch is stored.
//! - **Across cluster nodes** each node reads from its own cache, which
//!   the bucket updates, usually within milliseconds; two nodes writing
//!   one key at the same moment: the last write wins.
//! - **Shadow versions** read the live state but their writes go to a
//!   throwaway overlay.
//!
//! Limits (the broker's `[plugins] state_max_key_bytes`,
//! `state_max_value_bytes`, `state_max_bytes`) come back as
//! [`StateError`]s; nothing is changed by a call that fails.
//!
//! In native tests the same calls use an in-memory fake with a clock you
//! move: see [`crate::testing::reset_state`] and
//! [`crate::testing::advance_time`].

use std::time::Duration;

/// Why a state call failed. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The key is empty or longer than this many bytes.
    KeyTooLong(u32),
    /// The value is larger than this many bytes.
    ValueTooLarge(u32),
    /// The plugin's state would hold more than this many bytes.
    QuotaExceeded(u64),
    /// [`incr`] on a value that is not a decimal i64, or an overflow.
    NotANumber,
    /// The store cannot be reached (a disk or cluster fault).
    Unavailable(String),
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::KeyTooLong(max) => write!(f, "state keys are 1 to {max} bytes"),
            StateError::ValueTooLarge(max) => write!(f, "state values are at most {max} bytes"),
            StateError::QuotaExceeded(max) => {
                write!(f, "the plugin's state would pass its quota of {max} bytes")
            }
            StateError::NotANumber => {
                f.write_str("the value is not a decimal 64-bit integer, or the sum overflows")
            }
            StateError::Unavailable(reason) => write!(f, "plugin state unavailable: {reason}"),
        }
    }
}

impl std::error::Error for StateError {}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

/// The value of `key`, if set and not expired.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, StateError> {
    imp::get(key)
}

/// Sets `key` to `value`, with no expiry.
pub fn set(key: &str, value: impl AsRef<[u8]>) -> Result<(), StateError> {
    imp::set(key, value.as_ref(), None)
}

/// Sets `key` to `value`; it expires `ttl` from now.
pub fn set_with_ttl(key: &str, value: impl AsRef<[u8]>, ttl: Duration) -> Result<(), StateError> {
    imp::set(key, value.as_ref(), Some(ttl_ms(ttl)))
}

/// Removes `key`; true if it was set.
pub fn delete(key: &str) -> Result<bool, StateError> {
    imp::delete(key)
}

/// Adds `delta` to the decimal integer at `key` (0 when unset or expired)
/// and returns the new value.
pub fn incr(key: &str, delta: i64) -> Result<i64, StateError> {
    imp::incr(key, delta, None)
}

/// Like [`incr`]; when this call creates the key, it expires `ttl` from
/// now. An existing key keeps its expiry, so this counts over a fixed
/// window starting at the first increment.
pub fn incr_with_ttl(key: &str, delta: i64, ttl: Duration) -> Result<i64, StateError> {
    imp::incr(key, delta, Some(ttl_ms(ttl)))
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::StateError;
    use crate::__bindings::sluice::plugin::state as host;

    fn error(e: host::Error) -> StateError {
        match e {
            host::Error::KeyTooLong(max) => StateError::KeyTooLong(max),
            host::Error::ValueTooLarge(max) => StateError::ValueTooLarge(max),
            host::Error::QuotaExceeded(max) => StateError::QuotaExceeded(max),
            host::Error::NotANumber => StateError::NotANumber,
            host::Error::Unavailable(reason) => StateError::Unavailable(reason),
        }
    }

    pub fn get(key: &str) -> Result<Option<Vec<u8>>, StateError> {
        host::get(key).map_err(error)
    }

    pub fn set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), StateError> {
        host::set(key, value, ttl_ms).map_err(error)
    }

    pub fn delete(key: &str) -> Result<bool, StateError> {
        host::delete(key).map_err(error)
    }

    pub fn incr(key: &str, delta: i64, ttl_ms: Option<u64>) -> Result<i64, StateError> {
        host::incr(key, delta, ttl_ms).map_err(error)
    }
}

/// The native fake: a map per thread, a clock the test moves, and the
/// broker's default limits (see [`crate::testing`]).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod imp {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::StateError;

    /// The fake's limits.
    #[derive(Debug, Clone, Copy)]
    pub struct Limits {
        pub max_key: u32,
        pub max_value: u32,
        pub max_bytes: u64,
    }

    impl Default for Limits {
        fn default() -> Self {
            // The broker's defaults.
            Limits {
                max_key: 512,
                max_value: 64 * 1024,
                max_bytes: 16 * 1024 * 1024,
            }
        }
    }

    #[derive(Default)]
    pub struct Fake {
        pub entries: HashMap<String, (Vec<u8>, Option<u64>)>,
        pub now_ms: u64,
        pub limits: Limits,
    }

    thread_local! {
        pub static FAKE: RefCell<Fake> = RefCell::new(Fake::default());
    }

    const OVERHEAD: u64 = 32;

    impl Fake {
        fn live(&self, key: &str) -> Option<&Vec<u8>> {
            self.entries
                .get(key)
                .filter(|(_, at)| at.is_none_or(|at| at > self.now_ms))
                .map(|(v, _)| v)
        }

        fn check(&self, key: &str, value: Option<&[u8]>) -> Result<(), StateError> {
            if key.is_empty() || key.len() > self.limits.max_key as usize {
                return Err(StateError::KeyTooLong(self.limits.max_key));
            }
            if value.is_some_and(|v| v.len() > self.limits.max_value as usize) {
                return Err(StateError::ValueTooLarge(self.limits.max_value));
            }
            Ok(())
        }

        fn put(
            &mut self,
            key: &str,
            value: Vec<u8>,
            expires: Option<u64>,
        ) -> Result<(), StateError> {
            let now = self.now_ms;
            self.entries
                .retain(|_, (_, at)| at.is_none_or(|at| at > now));
            let size = |k: &str, v: &[u8]| k.len() as u64 + v.len() as u64 + OVERHEAD;
            let held: u64 = self
                .entries
                .iter()
                .filter(|(k, _)| k.as_str() != key)
                .map(|(k, (v, _))| size(k, v))
                .sum();
            if held + size(key, &value) > self.limits.max_bytes {
                return Err(StateError::QuotaExceeded(self.limits.max_bytes));
            }
            self.entries.insert(key.to_owned(), (value, expires));
            Ok(())
        }
    }

    pub fn get(key: &str) -> Result<Option<Vec<u8>>, StateError> {
        FAKE.with(|f| {
            let f = f.borrow();
            f.check(key, None)?;
            Ok(f.live(key).cloned())
        })
    }

    pub fn set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), StateError> {
        FAKE.with(|f| {
            let mut f = f.borrow_mut();
            f.check(key, Some(value))?;
            let expires = ttl_ms.map(|t| f.now_ms.saturating_add(t));
            f.put(key, value.to_vec(), expires)
        })
    }

    pub fn delete(key: &str) -> Result<bool, StateError> {
        FAKE.with(|f| {
            let mut f = f.borrow_mut();
            f.check(key, None)?;
            let was = f.live(key).is_some();
            f.entries.remove(key);
            Ok(was)
        })
    }

    pub fn incr(key: &str, delta: i64, ttl_ms: Option<u64>) -> Result<i64, StateError> {
        FAKE.with(|f| {
            let mut f = f.borrow_mut();
            f.check(key, None)?;
            let current = f.live(key).cloned();
            let base = match &current {
                None => 0,
                Some(v) => std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .ok_or(StateError::NotANumber)?,
            };
            let value = base.checked_add(delta).ok_or(StateError::NotANumber)?;
            let expires = match current {
                Some(_) => f.entries.get(key).and_then(|(_, at)| *at),
                None => ttl_ms.map(|t| f.now_ms.saturating_add(t)),
            };
            f.put(key, value.to_string().into_bytes(), expires)?;
            Ok(value)
        })
    }
}
