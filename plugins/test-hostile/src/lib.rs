//! A test fixture, not an example: a plugin that misbehaves the way its
//! config says, so the broker's sandboxing can be tested with a real
//! component. `mode` is one of `pass`, `loop` (never returns), `oom`
//! (allocates without end), `trap` (panics), `wrong-count` (answers no
//! outcome), `fail-init` (refuses to start), `log` (logs and passes),
//! `noisy` (logs `lines` lines per message and passes),
//! `stamp` (passes each message on with an `x-stamp` header holding the
//! build stamp below), `route-stamped` (routes each message to
//! `<topic>.<stamp>`), `replace-past-end` and `replace-bad-headers`
//! (malformed replacements, see [`Mode`]). In the stamp modes,
//! `trap_stamp` and `trap_percent` make the build with that stamp trap on
//! about that share of messages (by a hash of the payload), so two builds
//! with one config behave differently: a canary that fails.
//!
//! The build stamp is a fixed-size marker in the component's data. Hot
//! reload tests patch its bytes in a copy of the built file to get a second,
//! different version of the same plugin without building twice.

use serde::Deserialize;
use sluice_sdk::{Batch, MessageBuilder, Output, Plugin};

/// `SLUICE-STAMP:` then 8 bytes of stamp; tests replace the 8 bytes.
static STAMP: [u8; 21] = *b"SLUICE-STAMP:v1______";

/// The build stamp, read from memory so the compiler cannot fold it.
fn stamp() -> String {
    let bytes: [u8; 21] = unsafe { std::ptr::read_volatile(&STAMP) };
    String::from_utf8_lossy(&bytes[13..])
        .trim_end_matches('_')
        .to_owned()
}

/// What to do wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Behave.
    Pass,
    /// Spin forever.
    Loop,
    /// Allocate until the memory cap stops it.
    Oom,
    /// Panic (a trap).
    Trap,
    /// Return no outcome at all.
    WrongCount,
    /// Refuse the config.
    FailInit,
    /// Log a line per batch (and one to stdout), a warning about each
    /// message, then pass.
    Log,
    /// Log `lines` debug lines about each message, then pass (a plugin
    /// that floods its log).
    Noisy,
    /// Replace each message by itself with header `x-stamp: <build stamp>`.
    Stamp,
    /// Route each message to `<its topic>.<build stamp>`.
    RouteStamped,
    /// One state `get` and one `set` per message (key: its place in the
    /// batch; value: its first 16 bytes), then pass: what plugin state
    /// costs (`sluice bench pipeline`). A failed call rejects the message.
    State,
    /// Replace each message by a copy of itself, but the last outcome's
    /// span runs one past the new messages. The SDK cannot express a
    /// malformed answer, so the component breaks a good one on its way out
    /// (see `raw`); natively the copies are well formed.
    ReplacePastEnd,
    /// Replace each message by a copy of itself, but the last copy's
    /// headers end in a stray byte that does not decode (as above, only in
    /// the component).
    ReplaceBadHeaders,
}

/// The fixture's configuration.
#[derive(Debug, Deserialize)]
pub struct Config {
    /// The misbehaviour.
    pub mode: Mode,
    /// Lines per message in `noisy` mode.
    #[serde(default)]
    pub lines: u32,
    /// In the stamp modes: the build stamp that traps...
    #[serde(default)]
    pub trap_stamp: Option<String>,
    /// ...on this percentage of messages.
    #[serde(default)]
    pub trap_percent: u32,
}

/// The fixture.
#[derive(Debug)]
pub struct Hostile {
    mode: Mode,
    lines: u32,
    trap_stamp: Option<String>,
    trap_percent: u32,
}

/// FNV-1a: a stable hash of a payload.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Hostile {
    /// Traps if this build is the one configured to, on this payload.
    fn maybe_trap(&self, stamp: &str, payload: &[u8]) {
        if self.trap_stamp.as_deref() == Some(stamp)
            && fnv(payload) % 100 < u64::from(self.trap_percent)
        {
            panic!("build {stamp} traps on this message, as configured");
        }
    }
}

impl Plugin for Hostile {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.mode == Mode::FailInit {
            return Err("refusing to start, as configured".into());
        }
        Ok(Hostile {
            mode: config.mode,
            lines: config.lines,
            trap_stamp: config.trap_stamp,
            trap_percent: config.trap_percent,
        })
    }

    fn handle(&self, batch: &Batch, out: &mut Output) {
        match self.mode {
            Mode::Loop => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Mode::Oom => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Mode::Trap => panic!("hostile plugin traps, as configured"),
            Mode::WrongCount => {}
            Mode::Log => {
                sluice_sdk::info!(
                    "hostile plugin saw {} messages on {}",
                    batch.len(),
                    batch.topic()
                );
                println!("hostile plugin stdout: {} messages", batch.len());
                for message in batch.messages() {
                    sluice_sdk::warn!(message: message, "about message {}", message.index());
                    out.pass();
                }
            }
            Mode::Noisy => {
                for message in batch.messages() {
                    for line in 0..self.lines {
                        sluice_sdk::debug!(message: message, "noise {line}");
                    }
                    out.pass();
                }
            }
            Mode::Stamp => {
                let stamp = stamp();
                for message in batch.messages() {
                    self.maybe_trap(&stamp, message.payload());
                    out.replace([MessageBuilder::from_message(&message)
                        .set_header("x-stamp", stamp.as_str())]);
                }
            }
            Mode::RouteStamped => {
                let stamp = stamp();
                for message in batch.messages() {
                    self.maybe_trap(&stamp, message.payload());
                    out.route([format!("{}.{stamp}", batch.topic())]);
                }
            }
            Mode::State => {
                for message in batch.messages() {
                    let key = format!("k{}", message.index());
                    let payload = message.payload();
                    let set = sluice_sdk::state::get(&key).and_then(|_| {
                        sluice_sdk::state::set(&key, &payload[..payload.len().min(16)])
                    });
                    match set {
                        Ok(()) => out.pass(),
                        Err(e) => out.reject(format!("state: {e}")),
                    }
                }
            }
            Mode::ReplacePastEnd | Mode::ReplaceBadHeaders => {
                for message in batch.messages() {
                    out.replace([MessageBuilder::from_message(&message)]);
                }
            }
            Mode::Pass | Mode::FailInit => {
                for _ in batch.messages() {
                    out.pass();
                }
            }
        }
    }
}

// Natively this only checks the type; the component exports `raw` below.
#[cfg(not(target_arch = "wasm32"))]
sluice_sdk::export!(plugin: Hostile);

/// The component's exports: what `sluice_sdk::export!` generates, plus a
/// last step that breaks the answer in the `replace-*` modes (through the
/// SDK's hidden bindings, which no real plugin should touch).
#[cfg(target_arch = "wasm32")]
mod raw {
    use std::cell::RefCell;

    use sluice_sdk::__bindings::sluice::plugin::types::Outcome;
    use sluice_sdk::__bindings::{Batch, Guest, Outcomes};

    use super::{Hostile, Mode};

    std::thread_local! {
        static PLUGIN: RefCell<Option<Hostile>> = const { RefCell::new(None) };
    }

    struct HostileGuest;

    impl Guest for HostileGuest {
        fn init(config: String) -> Result<(), String> {
            PLUGIN.with(|slot| sluice_sdk::__runtime::init::<Hostile>(slot, &config))
        }

        fn handle(batch: Batch) -> Outcomes {
            PLUGIN.with(|slot| {
                let mode = slot.borrow().as_ref().map(|p| p.mode);
                let mut answer = sluice_sdk::__runtime::handle::<Hostile>(slot, batch);
                match mode {
                    Some(Mode::ReplacePastEnd) => {
                        if let Some(Outcome::Replace(span)) = answer.results.last_mut() {
                            span.len += 1;
                        }
                    }
                    Some(Mode::ReplaceBadHeaders) => {
                        let out = &mut answer.output;
                        if let Some(end) = out.header_ends.last_mut() {
                            out.headers.push(0xff);
                            *end += 1;
                        }
                    }
                    _ => {}
                }
                answer
            })
        }
    }

    sluice_sdk::__bindings::__export_plugin_world!(HostileGuest with_types_in sluice_sdk::__bindings);
}

#[cfg(test)]
mod tests {
    use sluice_sdk::testing::{run_plugin, BatchBuilder, TestOutcome};

    use super::*;

    #[test]
    fn the_log_mode_logs_about_the_batch_and_each_message() {
        let batch = BatchBuilder::new("t").message("a").message("b").build();
        sluice_sdk::testing::take_logs();
        run_plugin::<Hostile>(r#"{"mode": "log"}"#, &batch).unwrap();
        let lines = sluice_sdk::testing::take_logs();
        let about: Vec<Option<usize>> = lines.iter().map(|l| l.index).collect();
        assert_eq!(about, [None, Some(0), Some(1)], "{lines:?}");
        assert_eq!(lines[2].text, "about message 1");
    }

    #[test]
    fn modes_that_return_behave_as_configured() {
        let batch = BatchBuilder::new("t").message("a").message("b").build();
        assert_eq!(
            run_plugin::<Hostile>(r#"{"mode": "pass"}"#, &batch).unwrap(),
            vec![TestOutcome::Pass; 2]
        );
        assert_eq!(
            run_plugin::<Hostile>(r#"{"mode": "wrong-count"}"#, &batch).unwrap(),
            vec![]
        );
        match &run_plugin::<Hostile>(r#"{"mode": "stamp"}"#, &batch).unwrap()[..] {
            [TestOutcome::Replace(a), TestOutcome::Replace(b)] => {
                assert!(a[0]
                    .headers
                    .contains(&("x-stamp".to_owned(), "v1".to_owned())));
                assert_eq!(b[0].payload, b"b");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            run_plugin::<Hostile>(r#"{"mode": "route-stamped"}"#, &batch).unwrap(),
            vec![TestOutcome::Route(vec!["t.v1".into()]); 2]
        );
        // Another build's trap setting does nothing to this one; its own
        // traps on every message at 100%.
        let other = r#"{"mode": "stamp", "trap_stamp": "v2", "trap_percent": 100}"#;
        assert_eq!(run_plugin::<Hostile>(other, &batch).unwrap().len(), 2);
        let own = r#"{"mode": "route-stamped", "trap_stamp": "v1", "trap_percent": 100}"#;
        let trapped = std::panic::catch_unwind(|| run_plugin::<Hostile>(own, &batch));
        assert!(trapped.is_err());
        // Well formed natively: only the component breaks them.
        for mode in ["replace-past-end", "replace-bad-headers"] {
            let config = format!(r#"{{"mode": "{mode}"}}"#);
            match &run_plugin::<Hostile>(&config, &batch).unwrap()[..] {
                [TestOutcome::Replace(a), TestOutcome::Replace(b)] => {
                    assert_eq!(
                        (&a[0].payload[..], &b[0].payload[..]),
                        (&b"a"[..], &b"b"[..])
                    );
                }
                other => panic!("{mode}: {other:?}"),
            }
        }
        let err = run_plugin::<Hostile>(r#"{"mode": "fail-init"}"#, &batch).unwrap_err();
        assert!(err.contains("refusing"), "{err}");
    }
}
