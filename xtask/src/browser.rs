//! Headless Chromium for the console's browser test: Debian's `chromium`
//! and `chromium-driver`, installed with apt when missing (once per
//! machine; skipped when both binaries are there).

use std::path::Path;
use std::process::Command;

use anyhow::Context;

use crate::run;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Installs Chromium and ChromeDriver unless both are present.
pub fn ensure_chromium() -> anyhow::Result<()> {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing Debian's chromium and chromium-driver for the console's browser test"
    );
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut cmd).context("failed to install chromium with apt-get (run as root, or install the chromium and chromium-driver packages)")
    };
    apt(&["update", "-q"])?;
    apt(&[
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "chromium",
        "chromium-driver",
    ])?;
    anyhow::ensure!(
        Path::new(CHROMEDRIVER).exists(),
        "apt installed chromium-driver but {CHROMEDRIVER} is missing"
    );
    Ok(())
}
