//! `cargo xtask`: the project's own set-up and build steps, so that a fresh
//! machine needs nothing but cargo.
//!
//! - `cargo xtask setup`: installs what the build needs (the wasm32-wasip2
//!   target once plugins exist).
//! - `cargo xtask test`: setup, then the whole test suite.
//! - `cargo xtask run [ARGS...]`: setup, then the broker with
//!   `examples/sluice.toml` (extra arguments go to `sluice serve`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

const WASM_TARGET: &str = "wasm32-wasip2";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("failed to start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Adds the wasm target when plugins exist to be built and it is missing.
fn setup() -> anyhow::Result<()> {
    if !root().join("plugins").join("Cargo.toml").exists() {
        return Ok(());
    }
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("failed to run rustup (needed to add the wasm32-wasip2 target)")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

fn test(extra: &[String]) -> anyhow::Result<()> {
    setup()?;
    run(cargo().args(["test", "--workspace"]).args(extra))
}

fn serve(extra: &[String]) -> anyhow::Result<()> {
    setup()?;
    run(cargo()
        .args([
            "run",
            "--release",
            "-p",
            "sluice",
            "--bin",
            "sluice",
            "--",
            "serve",
            "--config",
        ])
        .arg(root().join("examples").join("sluice.toml"))
        .args(extra))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = args
        .split_first()
        .map_or(("help", &[][..]), |(c, r)| (c.as_str(), r));
    match command {
        "setup" => setup(),
        "test" => test(rest),
        "run" => serve(rest),
        "help" | "--help" | "-h" => {
            eprintln!(
                "usage: cargo xtask <setup | test [cargo test args] | run [sluice serve args]>"
            );
            Ok(())
        }
        other => bail!("unknown xtask command {other:?}; try: setup, test, run"),
    }
}
