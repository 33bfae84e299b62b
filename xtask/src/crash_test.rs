//! `cargo xtask crash-test [--rounds N] [--seconds-per-round S] [--seed N]
//! [OPTIONS]`: SIGKILL rounds under publish and consume load, checked by a
//! history checker outside the broker (`tests/src/history/`).
//!
//! Builds the broker (`sluice-under-test`) and the test
//! (`sluice-crash-test`) in release, then runs the test with the options
//! given (`--help` lists them all). It prints one line per round and a
//! summary, and fails with every violation printed when an acked publish
//! is lost, changed or stored twice, offsets are not dense, or a group
//! delivers a message again after its ack was confirmed. Not part of
//! `test`: 100 rounds take a few minutes.

use std::process::Command;

use super::{cargo, root, run};

/// Builds both binaries in release and runs the crash test with `args`.
pub fn crash_test(args: &[String]) -> anyhow::Result<()> {
    run(cargo().args(["build", "--release", "-p", "sluice-tests", "--bins"]))?;
    let release = root().join("target").join("release");
    run(Command::new(release.join("sluice-crash-test"))
        .arg("--broker")
        .arg(release.join("sluice-under-test"))
        .args(args))
}
