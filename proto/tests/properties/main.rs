//! Property tests of the wire protocol: every frame kind survives the codec
//! unchanged, however the bytes are cut on the way; arbitrary bytes never
//! panic the decoder; and pattern matching and name validation agree with
//! a reference model written from the rules (`*` one token, `>` one or more
//! trailing tokens).
//!
//! One test binary, a module per area:
//!
//! - `strategies` - generators of every frame kind and of topic names;
//! - `frames` - every frame kind survives the codec unchanged;
//! - `decoder` - however the bytes are cut, the same frames come out, and
//!   arbitrary bytes never panic the decoder;
//! - `subject` - topic and pattern rules against a reference model.

use proptest::prelude::*;

mod decoder;
mod frames;
mod strategies;
mod subject;

/// Cases per property: enough to matter, few enough for a debug build.
pub(crate) fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 128,
        ..ProptestConfig::default()
    }
}
