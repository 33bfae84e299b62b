//! Helpers for testing plugins natively with `cargo test`: build a batch,
//! run a plugin over it, look at the outcomes as plain values.
//!
//! ```
//! use sluice_sdk::testing::{BatchBuilder, TestMessage, TestOutcome};
//! use sluice_sdk::{Filter, FilterPlugin, Message, NoConfig};
//!
//! struct NonEmpty;
//! impl Filter for NonEmpty {
//!     type Config = NoConfig;
//!     fn new(_: NoConfig) -> Result<Self, String> { Ok(NonEmpty) }
//!     fn keep(&self, m: &Message<'_>) -> bool { !m.payload().is_empty() }
//! }
//!
//! let batch = BatchBuilder::new("orders").message("a").message("").build();
//! let outcomes = sluice_sdk::testing::run_plugin::<FilterPlugin<NonEmpty>>("{}", &batch).unwrap();
//! assert_eq!(outcomes, vec![TestOutcome::Pass, TestOutcome::Drop]);
//! ```

use crate::batch::{encode_headers, FLAG_KEY, FLAG_OFFSET};
pub use crate::log::LogLine;
use crate::output::{FlatMessages, Outcome};
use crate::{Batch, Output, Plugin};

/// A message for a test batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestMessage {
    /// Body.
    pub payload: Vec<u8>,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Publish time (ms).
    pub timestamp_ms: i64,
    /// Offset, if known.
    pub offset: Option<u64>,
}

impl TestMessage {
    /// A message with this payload.
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        TestMessage {
            payload: payload.into(),
            ..Self::default()
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the offset.
    pub fn offset(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }
}

impl<T: Into<Vec<u8>>> From<T> for TestMessage {
    fn from(payload: T) -> Self {
        TestMessage::new(payload)
    }
}

/// Builds a [`Batch`] for tests.
#[derive(Debug, Clone, Default)]
pub struct BatchBuilder {
    batch: Batch,
}

impl BatchBuilder {
    /// An empty batch of `topic`.
    pub fn new(topic: impl Into<String>) -> Self {
        BatchBuilder {
            batch: Batch {
                topic: topic.into(),
                ..Batch::default()
            },
        }
    }

    /// Adds a message (a payload, or a [`TestMessage`]).
    pub fn message(mut self, message: impl Into<TestMessage>) -> Self {
        let m = message.into();
        let b = &mut self.batch;
        b.payloads.extend_from_slice(&m.payload);
        b.payload_ends.push(b.payloads.len() as u32);
        if let Some(key) = &m.key {
            b.keys.extend_from_slice(key);
        }
        b.key_ends.push(b.keys.len() as u32);
        encode_headers(
            &mut b.headers,
            m.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        );
        b.header_ends.push(b.headers.len() as u32);
        b.timestamps.push(m.timestamp_ms);
        b.offsets.push(m.offset.unwrap_or(0));
        b.flags.push(
            if m.key.is_some() { FLAG_KEY } else { 0 }
                | if m.offset.is_some() { FLAG_OFFSET } else { 0 },
        );
        self
    }

    /// The batch.
    pub fn build(self) -> Batch {
        self.batch
    }
}

/// An outcome as a plain value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestOutcome {
    /// Kept unchanged.
    Pass,
    /// Dropped.
    Drop,
    /// Replaced by these messages.
    Replace(Vec<TestMessage>),
    /// Routed to these topics.
    Route(Vec<String>),
    /// Rejected with this reason.
    Reject(String),
    /// Dead-lettered with this reason.
    DeadLetter(String),
}

fn flat_message(out: &FlatMessages, i: usize) -> TestMessage {
    let batch = Batch {
        topic: String::new(),
        payloads: out.payloads.clone(),
        payload_ends: out.payload_ends.clone(),
        keys: out.keys.clone(),
        key_ends: out.key_ends.clone(),
        headers: out.headers.clone(),
        header_ends: out.header_ends.clone(),
        timestamps: vec![0; out.len()],
        offsets: vec![0; out.len()],
        flags: out.flags.clone(),
    };
    let m = batch.get(i).expect("index within output");
    TestMessage {
        payload: m.payload().to_vec(),
        key: m.key().map(<[u8]>::to_vec),
        headers: m
            .headers()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect(),
        timestamp_ms: 0,
        offset: None,
    }
}

// Beside the test values it produces, so that `output` does not depend on
// the test helpers.
impl Output {
    /// The outcomes in an owned, easy-to-assert form (for tests).
    pub fn decoded(&self) -> Vec<TestOutcome> {
        self.results
            .iter()
            .map(|r| match r {
                Outcome::Pass => TestOutcome::Pass,
                Outcome::Drop => TestOutcome::Drop,
                Outcome::Replace { start, len } => TestOutcome::Replace(
                    (*start..start + len)
                        .map(|i| flat_message(&self.output, i as usize))
                        .collect(),
                ),
                Outcome::Route { start, len } => TestOutcome::Route(
                    self.topics[*start as usize..(start + len) as usize].to_vec(),
                ),
                Outcome::Reject(reason) => TestOutcome::Reject(reason.clone()),
                Outcome::DeadLetter(reason) => TestOutcome::DeadLetter(reason.clone()),
            })
            .collect()
    }
}

/// Builds plugin `P` from a JSON config (as the broker's `init` does) and
/// runs it over `batch`. Errors are `init` errors.
pub fn run_plugin<P: Plugin>(config: &str, batch: &Batch) -> Result<Vec<TestOutcome>, String> {
    let plugin = crate::plugin::instantiate::<P>(config)?;
    let out = crate::plugin::run(&plugin, batch);
    Ok(out.decoded())
}

/// The lines the plugin logged on this thread since the last call (the
/// macros keep them natively, and print them to standard error).
///
/// ```
/// use sluice_sdk::log::Level;
/// sluice_sdk::info!("hello {}", 1);
/// let lines = sluice_sdk::testing::take_logs();
/// assert_eq!((lines[0].level, lines[0].text.as_str()), (Level::Info, "hello 1"));
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub fn take_logs() -> Vec<LogLine> {
    crate::log::take()
}

/// Empties the state fake of this thread and sets its clock and limits
/// back (the broker's defaults). Call it at the start of a test that uses
/// [`crate::state`].
#[cfg(not(target_arch = "wasm32"))]
pub fn reset_state() {
    crate::state::imp::FAKE.with(|f| *f.borrow_mut() = Default::default());
}

/// Moves the state fake's clock forward: entries whose TTL ran out are
/// gone, as they would be in the broker.
#[cfg(not(target_arch = "wasm32"))]
pub fn advance_time(by: std::time::Duration) {
    let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
    crate::state::imp::FAKE.with(|f| {
        let mut f = f.borrow_mut();
        f.now_ms = f.now_ms.saturating_add(ms);
    });
}

/// Sets the state fake's quota (`[plugins] state_max_bytes`; keys, values
/// and 32 bytes per entry), to test what your plugin does past it.
#[cfg(not(target_arch = "wasm32"))]
pub fn state_quota(max_bytes: u64) {
    crate::state::imp::FAKE.with(|f| f.borrow_mut().limits.max_bytes = max_bytes);
}

/// What the state fake of this thread holds (live entries), sorted by key.
#[cfg(not(target_arch = "wasm32"))]
pub fn state_entries() -> Vec<(String, Vec<u8>)> {
    crate::state::imp::FAKE.with(|f| {
        let f = f.borrow();
        let mut out: Vec<_> = f
            .entries
            .iter()
            .filter(|(_, (_, at))| at.is_none_or(|at| at > f.now_ms))
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect();
        out.sort();
        out
    })
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod state_fake_tests {
    use std::time::Duration;

    use super::{advance_time, reset_state, state_quota};
    use crate::state::*;

    #[test]
    fn the_fake_behaves_like_the_broker() {
        reset_state();
        assert_eq!(get("a"), Ok(None));
        set("a", "1").unwrap();
        assert_eq!(incr("a", 2), Ok(3));
        assert_eq!(get("a"), Ok(Some(b"3".to_vec())));
        set("t", "x").unwrap();
        assert_eq!(incr("t", 1), Err(StateError::NotANumber));
        assert_eq!(delete("a"), Ok(true));
        assert_eq!(delete("a"), Ok(false));
        assert_eq!(get(""), Err(StateError::KeyTooLong(512)));

        assert_eq!(incr_with_ttl("w", 1, Duration::from_secs(60)), Ok(1));
        advance_time(Duration::from_secs(30));
        assert_eq!(incr_with_ttl("w", 1, Duration::from_secs(60)), Ok(2));
        advance_time(Duration::from_secs(30));
        assert_eq!(get("w"), Ok(None), "expired 60 s after the first increment");
        assert_eq!(incr_with_ttl("w", 1, Duration::from_secs(60)), Ok(1));

        reset_state();
        state_quota(100);
        set("k", [0u8; 60]).unwrap();
        assert_eq!(set("j", [0u8; 60]), Err(StateError::QuotaExceeded(100)));
        assert!(StateError::QuotaExceeded(100).to_string().contains("quota"));
    }
}
