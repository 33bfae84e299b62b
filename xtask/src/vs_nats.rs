//! `cargo xtask bench-vs-nats`: sluice and NATS side by side, in one run,
//! on this machine, each broker its own process on loopback, one at a
//! time, the clients in another.
//!
//! ```text
//! cargo xtask bench-vs-nats [--runs N] [--duration D] [--warmup D]
//! ```
//!
//! Installs the pinned `nats-server` (`nats.rs`) when it is missing,
//! builds `sluice` (release), the example plugins and the NATS harness
//! (`bench/nats-harness`), then runs [`plan::stages`]: NATS core plaintext
//! and with TLS on its client port (a throwaway CA from
//! `cluster/tls.rs`), JetStream by default and with `sync_interval:
//! always`; then `sluice serve` under each fsync policy, and the pipeline
//! rows with a broker embedded in `sluice bench`. Every throughput run
//! has a warm-up (`--warmup`, default 1s) and then a steady window
//! (`--duration`, default 3s): its figure is what the clients received
//! (pub/sub) or had acked (publish, consume) inside the window, per
//! second. Each figure is the median of `--runs` runs (default 3), with
//! min and max beside it.
//!
//! Prints one table pairing each sluice figure with its like-for-like
//! NATS figure, the ratio, issue 17's goal and whether it is met, and
//! writes it to `target/bench-vs-nats.md`; every raw run goes to
//! `target/bench-vs-nats.json`.
//!
//! `--cluster` runs the cluster-mode comparison instead
//! (`cluster/bench.rs`); it shares the helpers here.
//!
//! # Layout
//!
//! - here: the command, its options, and the helpers `--cluster` shares.
//! - [`plan`]: every figure ([`plan::Key`]) and the stages that measure them.
//! - [`servers`]: nats-server in each mode, `sluice serve` per policy.
//! - [`runner`]: runs the stages, repeats each job, collects the runs.
//! - [`table`]: the rows, ratios and goals; markdown and JSON.
//! - [`stats`]: median, min and max.

mod plan;
mod runner;
mod servers;
mod stats;
mod table;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::nats::ensure_nats_server;
use super::{cargo, plugins, root, run};
use runner::{Programs, Runner, Timing};
use servers::NatsTls;

/// Makes a CA and a server certificate for 127.0.0.1 in a directory
/// (`ca.pem`, `node-1.pem`, `node-1-key.pem`): `cluster/tls.rs`'s
/// `ensure_tls`, handed in by `main.rs`, since `cluster/bench.rs` uses
/// this module and an import back would make the two a circle.
pub type MakeCertificates = fn(&Path, usize) -> anyhow::Result<()>;

/// The command's options.
#[derive(Debug, Clone, PartialEq)]
struct Options {
    runs: usize,
    warmup: String,
    duration: String,
}

/// Options and their defaults, for the help and the errors.
const USAGE: &str = "cargo xtask bench-vs-nats [--runs N (3)] [--duration D (3s)] [--warmup D (1s)]; D as 3s, 500ms, 0.5s";

/// Whether `text` is a duration both tools read: a number, then `ms`,
/// `s` or `m` (`3s`, `500ms`, `0.5s`); the seconds it stands for.
fn seconds(text: &str) -> Option<f64> {
    let (number, scale) = [("ms", 1e-3), ("s", 1.0), ("m", 60.0)]
        .iter()
        .find_map(|&(unit, scale)| Some((text.strip_suffix(unit)?, scale)))?;
    let n: f64 = number.parse().ok()?;
    (n.is_finite() && n >= 0.0).then_some(n * scale)
}

impl Options {
    fn parse(extra: &[String]) -> anyhow::Result<Options> {
        let mut options = Options {
            runs: 3,
            warmup: "1s".into(),
            duration: "3s".into(),
        };
        let mut args = extra.iter();
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .with_context(|| format!("{arg} needs a value; {USAGE}"))
            };
            match arg.as_str() {
                "--runs" => {
                    let v = value()?;
                    options.runs = v.parse().ok().filter(|&n| n > 0).with_context(|| {
                        format!("--runs {v:?} is not a number of runs (1 or more)")
                    })?;
                }
                "--warmup" | "--duration" => {
                    let v = value()?.clone();
                    match seconds(&v) {
                        Some(s) if s > 0.0 || arg == "--warmup" => {}
                        _ => bail!("{arg} {v:?} is not a duration; {USAGE}"),
                    }
                    match arg.as_str() {
                        "--warmup" => options.warmup = v,
                        _ => options.duration = v,
                    }
                }
                "--count" => bail!(
                    "bench-vs-nats runs for a time, not a count: use --duration (--count is for --cluster); {USAGE}"
                ),
                other => bail!("unknown option {other:?}; {USAGE}"),
            }
        }
        Ok(options)
    }
}

/// Runs a command that prints one JSON object per line; returns them.
pub(crate) fn json_lines(cmd: &mut Command) -> anyhow::Result<Vec<Value>> {
    eprintln!("xtask: {cmd:?}");
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("failed to run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed with {}", out.status);
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).context("bench output is not JSON"))
        .collect()
}

/// `sluice bench ARGS --json` against the broker at `server`.
pub(crate) fn bench_node(
    bin: &Path,
    server: &str,
    ca: &Path,
    args: &[&str],
) -> anyhow::Result<Value> {
    let mut cmd = Command::new(bin);
    cmd.arg("bench")
        .args(args)
        .args(["--json", "--server", server, "--ca"])
        .arg(ca);
    json_lines(&mut cmd)?
        .into_iter()
        .next()
        .context("sluice bench printed nothing")
}

pub(crate) fn nats(harness: &Path, server: &str, args: &[&str]) -> anyhow::Result<Value> {
    let mut cmd = Command::new(harness);
    cmd.arg(server).args(args);
    json_lines(&mut cmd)?
        .into_iter()
        .next()
        .context("the NATS harness printed nothing")
}

pub(crate) fn rate(v: &Value) -> f64 {
    v["msgs_per_s"].as_f64().unwrap_or(0.0)
}

/// The value of option `name` in `extra`, or `default`.
pub(crate) fn option(extra: &[String], name: &str, default: u64) -> anyhow::Result<u64> {
    match extra.iter().position(|a| a == name) {
        Some(i) => {
            let value = extra
                .get(i + 1)
                .with_context(|| format!("{name} needs a value"))?;
            value
                .parse()
                .with_context(|| format!("{name} {value:?} is not a number"))
        }
        None => Ok(default),
    }
}

/// The binaries every comparison runs: nats-server, `sluice` and the
/// harness, installed and built (release) when needed.
pub(crate) fn binaries() -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let nats_server = ensure_nats_server()?;
    run(cargo().args(["build", "--release", "-p", "sluice", "--bin", "sluice"]))?;
    let target = root().join("target");
    run(cargo()
        .args(["build", "--release", "--manifest-path"])
        .arg(root().join("bench/nats-harness/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target))?;
    let (bin, harness) = (
        target.join("release/sluice"),
        target.join("release/nats-harness"),
    );
    Ok((nats_server, bin, harness))
}

/// Runs the comparison.
pub fn bench_vs_nats(extra: &[String], make_certificates: MakeCertificates) -> anyhow::Result<()> {
    let options = Options::parse(extra)?;
    let (nats_server, sluice, harness) = binaries()?;
    plugins()?;
    let programs = Programs {
        nats_server,
        sluice,
        harness,
        plugins: root().join("plugins").join("dist"),
    };
    let version = Command::new(&programs.nats_server)
        .arg("--version")
        .output()?;
    let nats_version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let dir = std::env::temp_dir().join(format!("sluice-vs-nats-{}", std::process::id()));
    let tls_dir = dir.join("tls");
    make_certificates(&tls_dir, 1)?;
    let tls = NatsTls {
        ca: tls_dir.join("ca.pem"),
        cert: tls_dir.join("node-1.pem"),
        key: tls_dir.join("node-1-key.pem"),
    };
    let timing = Timing {
        warmup: options.warmup.clone(),
        duration: options.duration.clone(),
    };
    let stages = plan::stages();
    let mut runner = Runner::new(&programs, &timing, options.runs, &stages);
    let started = std::time::Instant::now();
    let outcome = stages
        .iter()
        .try_for_each(|stage| runner.stage(stage, &dir, &tls));
    let _ = std::fs::remove_dir_all(&dir);
    outcome?;
    eprintln!(
        "xtask: measured in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let header = format!(
        "Machine: {}; {nats_version}; each figure the median of {} run(s), (min–max) beside it; each throughput run a {} warm-up, then a {} steady window, counting what the clients received (pub/sub) or had acked (publish, consume) inside it. Loopback, one broker process at a time, the clients in their own process.",
        machine(),
        options.runs,
        options.warmup,
        options.duration
    );
    let rows = table::rows(&runner.results);
    let mut notes = vec![table::details(&runner.results), SETTINGS.to_owned()];
    if !runner.warnings.is_empty() {
        notes.push(format!("Warnings:\n\n- {}", runner.warnings.join("\n- ")));
    }
    write_table(&table::markdown(&header, &rows, &notes), "bench-vs-nats.md")?;
    let everything = json!({
        "machine": machine(),
        "nats_server": nats_version,
        "runs": options.runs,
        "warmup": options.warmup,
        "duration": options.duration,
        "rows": table::json_rows(&rows),
        "measured": table::json_runs(&runner.results),
        "warnings": runner.warnings,
    });
    let out = root().join("target").join("bench-vs-nats.json");
    std::fs::write(&out, serde_json::to_string_pretty(&everything)?)
        .with_context(|| format!("failed to write {}", out.display()))?;
    eprintln!("xtask: every run written to {}", out.display());
    Ok(())
}

/// Every setting of both sides, under the table.
const SETTINGS: &str = "Settings:

- NATS: nats-server with JetStream (file store) on every server, \
  configured by file. Core pub/sub: one publisher, and each subscriber on \
  its own connection (async-nats 0.51, default options). TLS: a throwaway \
  CA and a certificate for 127.0.0.1, TLS required on the client port. \
  JetStream publish: async publish, at most 1,024 acks awaited. Consume: \
  a durable pull consumer with explicit acks, each worker fetching \
  batches of 256 (max_ack_pending 256 per worker), over a stream \
  preloaded for twice the warm-up and window. Latency: open loop at 5,000 \
  msg/s, send to ack, of what was sent inside the window.
- sluice: `sluice serve` (release), max_frame_bytes 4 MiB, plugins not \
  watched, one process per fsync policy. Publish: one producer, 16 \
  requests of 64 messages in flight. Pub/sub: fsync=never, each \
  subscriber on its own connection, from the latest message. Consume: a \
  consumer group, 256 unacked per worker, over a topic preloaded for \
  twice the warm-up and window. Latency: one message per request, open \
  loop at 5,000 msg/s. Idle RSS: one second after start, from /proc, one \
  reading per broker started (three each). 1,000 idle connections: each \
  pinged, then held; the broker's RSS from its /metrics before and while.
- Pipeline rows: `sluice bench pipeline --embedded --fsync never` (the \
  broker in the bench process): the publish load above through no \
  plugin, one pass-through stage (test_hostile, mode pass) and the \
  example order pipeline.";

/// Prints `table` and writes it to `target/NAME`.
pub(crate) fn write_table(table: &str, name: &str) -> anyhow::Result<()> {
    println!("\n{table}");
    let out = root().join("target").join(name);
    std::fs::File::create(&out)?.write_all(table.as_bytes())?;
    eprintln!("xtask: table written to {}", out.display());
    Ok(())
}

/// This machine's CPU model and core count, for the tables.
pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Options> {
        Options::parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn options_default_and_parse() {
        let defaults = parse(&[]).unwrap();
        assert_eq!(
            (
                defaults.runs,
                defaults.warmup.as_str(),
                defaults.duration.as_str()
            ),
            (3, "1s", "3s")
        );
        let short = parse(&["--runs", "1", "--duration", "1s", "--warmup", "0.5s"]).unwrap();
        assert_eq!(
            (short.runs, short.warmup.as_str(), short.duration.as_str()),
            (1, "0.5s", "1s")
        );
        assert!(parse(&["--runs", "0"]).is_err());
        assert!(parse(&["--duration", "0s"]).is_err());
        assert!(parse(&["--duration", "3"]).is_err());
        assert!(parse(&["--count", "100"]).is_err());
        assert!(parse(&["--runs"]).is_err());
    }

    #[test]
    fn durations_read_as_both_tools_read_them() {
        assert_eq!(seconds("3s"), Some(3.0));
        assert_eq!(seconds("500ms"), Some(0.5));
        assert_eq!(seconds("0.5s"), Some(0.5));
        assert_eq!(seconds("2m"), Some(120.0));
        assert_eq!(seconds("3"), None);
        assert_eq!(seconds("-1s"), None);
        assert_eq!(seconds("s"), None);
    }
}
