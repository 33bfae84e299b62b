//! The Python package (`clients/python`, `import sluice`): a virtualenv
//! under `target/python-venv/` with maturin and pytest from PyPI (pinned
//! and hash-checked in `clients/python/requirements-dev.txt`), a wheel
//! built with the dev profile into the shared `target/`, and its pytest
//! suite against the `sluice` binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use super::{cargo, root, run};

fn package_dir() -> PathBuf {
    root().join("clients").join("python")
}

fn venv_dir() -> PathBuf {
    root().join("target").join("python-venv")
}

/// The virtualenv's interpreter.
fn python() -> PathBuf {
    venv_dir().join("bin").join("python")
}

/// Creates the virtualenv if it is missing and installs the pinned tools
/// when the requirements changed since the last install.
pub fn ensure_venv() -> anyhow::Result<PathBuf> {
    let python = python();
    if !python.exists() {
        eprintln!("xtask: creating a virtualenv in {}", venv_dir().display());
        run(Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(venv_dir()))
        .context("python3 -m venv failed (python3 with venv is needed for the Python client)")?;
    }
    let requirements = package_dir().join("requirements-dev.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .with_context(|| format!("failed to read {}", requirements.display()))?;
    let stamp = venv_dir().join("requirements-installed.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        install_pinned(&python, &requirements)?;
        std::fs::write(&stamp, wanted)
            .with_context(|| format!("failed to write {}", stamp.display()))?;
    }
    Ok(python)
}

/// Builds the wheel with cargo profile `profile` into the shared
/// `target/` and installs it into the virtualenv.
fn build_and_install(python: &Path, profile: &str) -> anyhow::Result<()> {
    let wheels = root().join("target").join("wheels");
    if wheels.exists() {
        std::fs::remove_dir_all(&wheels)
            .with_context(|| format!("failed to clear {}", wheels.display()))?;
    }
    let bin = venv_dir().join("bin");
    let path = std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .context("failed to put the virtualenv on PATH")?;
    run(Command::new(bin.join("maturin"))
        .current_dir(root())
        .env("VIRTUAL_ENV", venv_dir())
        .env("PATH", path)
        .args(["build", "--profile", profile, "--manifest-path"])
        .arg(package_dir().join("Cargo.toml"))
        .arg("--out")
        .arg(&wheels)
        .arg("--interpreter")
        .arg(python))?;
    let wheel = std::fs::read_dir(&wheels)
        .with_context(|| format!("failed to list {}", wheels.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .context("maturin built no wheel")?;
    run(pip_install(python)
        .args(["--force-reinstall", "--no-deps"])
        .arg(wheel))
}

/// `python -m pip install`, quietly.
fn pip_install(python: &Path) -> Command {
    let mut pip = Command::new(python);
    pip.args(["-m", "pip", "install", "--quiet"])
        .arg("--disable-pip-version-check");
    pip
}

/// Installs a requirements file whose every line is pinned with its hash.
fn install_pinned(python: &Path, requirements: &Path) -> anyhow::Result<()> {
    run(pip_install(python)
        .args(["--require-hashes", "--only-binary=:all:", "-r"])
        .arg(requirements))
}

/// Builds the broker (debug) and the package, then runs the pytest suite
/// against that broker.
pub fn test(extra: &[String]) -> anyhow::Result<()> {
    let python = ensure_venv()?;
    // --workspace: the features `cargo test --workspace` built it with.
    run(cargo().args(["build", "--workspace", "--bin", "sluice"]))?;
    build_and_install(&python, "dev")?;
    run(Command::new(&python)
        .current_dir(package_dir())
        .env(
            "SLUICE_BIN",
            root().join("target").join("debug").join("sluice"),
        )
        .args(["-m", "pytest", "-q", "tests"])
        .args(extra))
}

/// `cargo xtask bench-python`: the package (release) against nats-py on
/// JetStream, acked publish and consume at 128 B and 1 KiB; the table
/// goes to `target/bench-python.md`.
pub fn bench(extra: &[String], nats_server: &Path) -> anyhow::Result<()> {
    let python = ensure_venv()?;
    install_pinned(&python, &package_dir().join("requirements-bench.txt"))?;
    run(cargo().args(["build", "--release", "-p", "sluice", "--bin", "sluice"]))?;
    build_and_install(&python, "release")?;
    let target = root().join("target");
    run(Command::new(&python)
        .arg(package_dir().join("bench").join("vs_nats_py.py"))
        .arg("--sluice")
        .arg(target.join("release").join("sluice"))
        .arg("--nats-server")
        .arg(nats_server)
        .arg("--out")
        .arg(target.join("bench-python.md"))
        .args(extra))
}
