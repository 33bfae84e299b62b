//! A test fixture, not an example: a plugin that misbehaves the way its
//! config says, so the broker's sandboxing can be tested with a real
//! component. `mode` is one of `pass`, `loop` (never returns), `oom`
//! (allocates without end), `trap` (panics), `wrong-count` (answers no
//! outcome), `fail-init` (refuses to start), `log` (logs and passes).

use serde::Deserialize;
use sluice_sdk::{Batch, Output, Plugin};

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
    /// Log a line per batch, then pass.
    Log,
}

/// The fixture's configuration.
#[derive(Debug, Deserialize)]
pub struct Config {
    /// The misbehaviour.
    pub mode: Mode,
}

/// The fixture.
#[derive(Debug)]
pub struct Hostile {
    mode: Mode,
}

impl Plugin for Hostile {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.mode == Mode::FailInit {
            return Err("refusing to start, as configured".into());
        }
        Ok(Hostile { mode: config.mode })
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
                for _ in batch.messages() {
                    out.pass();
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

sluice_sdk::export!(plugin: Hostile);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing::{run_plugin, BatchBuilder, TestOutcome};

    use super::*;

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
        let err = run_plugin::<Hostile>(r#"{"mode": "fail-init"}"#, &batch).unwrap_err();
        assert!(err.contains("refusing"), "{err}");
    }
}
