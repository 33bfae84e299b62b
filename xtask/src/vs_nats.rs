//! `cargo xtask bench-vs-nats`: sluice and NATS side by side, in one run,
//! on this machine, each broker its own process on loopback.
//!
//! Installs the pinned `nats-server` (`nats.rs`) when it is missing, builds
//! `sluice` (release) and the NATS harness (`bench/nats-harness`), runs the
//! NATS scenarios against `nats-server -js` on a temp dir, then the sluice
//! scenarios against `sluice serve` under each fsync policy, stops both,
//! and prints one table with sluice/NATS ratios (also written to
//! `target/bench-vs-nats.md`).
//!
//! `--cluster` runs the cluster-mode comparison instead
//! (`cluster/bench.rs`); it shares the helpers here.

use std::io::Write;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use super::nats::ensure_nats_server;
use super::{cargo, root, run};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_tcp_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn free_udp_port() -> anyhow::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !ready() {
        if Instant::now() > deadline {
            bail!("{what} did not become ready within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
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

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

struct Sluice {
    child: Killed,
    server: String,
    admin: String,
    ca: PathBuf,
}

fn start_sluice(bin: &Path, dir: &Path, fsync: &str) -> anyhow::Result<Sluice> {
    let port = free_udp_port()?;
    let admin = free_tcp_port()?;
    let data = dir.join(format!("sluice-{fsync}"));
    std::fs::create_dir_all(&data)?;
    let config = data.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n[storage]\nfsync = \"{fsync}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[plugins]\nwatch = false\n[limits]\n# 1000 messages of 1 KiB in one publish frame.\nmax_frame_bytes = 4194304\n",
            data.join("data").display()
        ),
    )?;
    let log = std::fs::File::create(data.join("broker.log"))?;
    let child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("failed to start sluice serve")?;
    let child = Killed(child);
    let log_path = data.join("broker.log");
    wait_for("sluice", Duration::from_secs(30), || {
        std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("sluice is listening"))
    })?;
    Ok(Sluice {
        child,
        admin: format!("127.0.0.1:{admin}"),
        server: format!("127.0.0.1:{port}"),
        ca: data.join("data").join("tls").join("cert.pem"),
    })
}

fn sluice_bench(bin: &Path, s: &Sluice, args: &[&str]) -> anyhow::Result<Value> {
    bench_node(bin, &s.server, &s.ca, args)
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

fn p99(v: &Value) -> f64 {
    v["p99_us"].as_f64().unwrap_or(f64::NAN)
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
pub fn bench_vs_nats(extra: &[String]) -> anyhow::Result<()> {
    let count = option(extra, "--count", 100_000)?;
    let n = count.to_string();
    let latency_n = (count / 4).clamp(1000, 25_000).to_string();
    let (nats_server, bin, harness) = binaries()?;
    let dir = std::env::temp_dir().join(format!("sluice-vs-nats-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    // NATS first, then it is stopped before sluice starts.
    let port = free_tcp_port()?;
    let nats_dir = dir.join("nats");
    std::fs::create_dir_all(&nats_dir)?;
    let version = Command::new(&nats_server).arg("--version").output()?;
    let nats_version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let nats_child = Killed(
        Command::new(&nats_server)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&nats_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("failed to start nats-server")?,
    );
    let url = format!("127.0.0.1:{port}");
    wait_for("nats-server", Duration::from_secs(20), || {
        std::net::TcpStream::connect(&url).is_ok()
    })?;
    let nats_idle = rss_kib(nats_child.0.id());
    let n_core_128 = nats(&harness, &url, &["core-pubsub", "128", &n])?;
    let n_core_1k = nats(&harness, &url, &["core-pubsub", "1024", &n])?;
    let n_js_128 = nats(&harness, &url, &["js-publish", "128", &n])?;
    let n_js_1k = nats(&harness, &url, &["js-publish", "1024", &n])?;
    let n_consume = nats(&harness, &url, &["js-consume", "1024", &n, "4"])?;
    let n_latency = nats(&harness, &url, &["js-latency", "1024", &latency_n, "5000"])?;
    drop(nats_child);

    let always = start_sluice(&bin, &dir, "always")?;
    let sluice_idle = rss_kib(always.child.0.id());
    let s_always_1k = sluice_bench(&bin, &always, &["publish", "--size", "1024", "--count", &n])?;
    let s_always_128 = sluice_bench(&bin, &always, &["publish", "--size", "128", "--count", &n])?;
    let s_consume = sluice_bench(
        &bin,
        &always,
        &["queue", "--size", "1024", "--count", &n, "--workers", "4"],
    )?;
    let s_conns = sluice_bench(
        &bin,
        &always,
        &[
            "connections",
            "--connections",
            "1000",
            "--admin",
            &always.admin,
        ],
    )?;
    let s_latency = sluice_bench(
        &bin,
        &always,
        &[
            "latency", "--size", "1024", "--count", &latency_n, "--rate", "5000",
        ],
    )?;
    drop(always);
    let interval = start_sluice(&bin, &dir, "interval")?;
    let s_interval_1k = sluice_bench(
        &bin,
        &interval,
        &["publish", "--size", "1024", "--count", &n],
    )?;
    let s_latency_interval = sluice_bench(
        &bin,
        &interval,
        &[
            "latency", "--size", "1024", "--count", &latency_n, "--rate", "5000",
        ],
    )?;
    drop(interval);
    let never = start_sluice(&bin, &dir, "never")?;
    let s_sub_128 = sluice_bench(&bin, &never, &["pubsub", "--size", "128", "--count", &n])?;
    let s_sub_1k = sluice_bench(&bin, &never, &["pubsub", "--size", "1024", "--count", &n])?;
    let big = (count * 10).to_string();
    let s_batch_128 = sluice_bench(
        &bin,
        &never,
        &[
            "publish", "--size", "128", "--batch", "1000", "--window", "8", "--count", &big,
        ],
    )?;
    let s_batch_1k = sluice_bench(
        &bin,
        &never,
        &[
            "publish", "--size", "1024", "--batch", "1000", "--window", "8", "--count", &big,
        ],
    )?;
    drop(never);
    let _ = std::fs::remove_dir_all(&dir);

    let mut table = String::new();
    table.push_str(&format!(
        "Machine: {}; {nats_version}; {count} messages per throughput run, loopback, one process per broker and one for the clients.\n\n",
        machine()
    ));
    table.push_str("| scenario | sluice | NATS | sluice/NATS | goal |\n|---|---:|---:|---:|---|\n");
    let mut row = |name: &str, s: f64, n: f64, unit: &str, goal: &str| {
        let ratio = if n > 0.0 { s / n } else { f64::NAN };
        table.push_str(&format!(
            "| {name} | {s:.0} {unit} | {n:.0} {unit} | {ratio:.2}x | {goal} |\n"
        ));
    };
    row(
        "durable publish 1 KiB: sluice fsync=always vs JetStream default",
        rate(&s_always_1k),
        rate(&n_js_1k),
        "msg/s",
        ">= 1.0x",
    );
    row(
        "durable publish 1 KiB: sluice fsync=interval vs JetStream default",
        rate(&s_interval_1k),
        rate(&n_js_1k),
        "msg/s",
        ">= 1.5x",
    );
    row(
        "durable publish 128 B: sluice fsync=always vs JetStream default",
        rate(&s_always_128),
        rate(&n_js_128),
        "msg/s",
        "",
    );
    row(
        "live pub/sub 1:1, 128 B",
        rate(&s_sub_128),
        rate(&n_core_128),
        "msg/s",
        ">= 1.0x",
    );
    row(
        "live pub/sub 1:1, 1 KiB",
        rate(&s_sub_1k),
        rate(&n_core_1k),
        "msg/s",
        ">= 0.6x",
    );
    row(
        "consume with acks, 4 workers, 1 KiB (fsync=always vs JetStream pull)",
        rate(&s_consume),
        rate(&n_consume),
        "msg/s",
        ">= 1.5x",
    );
    let (sp, np) = (p99(&s_latency), p99(&n_latency));
    table.push_str(&format!(
        "| acked publish p99 at 5,000 msg/s, 1 KiB (fsync=always vs JetStream) | {sp:.0} µs | {np:.0} µs | {:.2}x | <= 1.0x |\n",
        sp / np
    ));
    let sp = p99(&s_latency_interval);
    table.push_str(&format!(
        "| acked publish p99 at 5,000 msg/s, 1 KiB (fsync=interval vs JetStream: comparable durability) | {sp:.0} µs | {np:.0} µs | {:.2}x | <= 1.0x |\n",
        sp / np
    ));
    table.push_str(&format!(
        "| batched produce (1000/batch, fsync=never), 128 B, vs Iggy TCP 1.58M msg/s (reference, not run here) | {:.0} msg/s | 1580000 msg/s | {:.2}x | >= 1.0x |\n",
        rate(&s_batch_128),
        rate(&s_batch_128) / 1_580_000.0
    ));
    table.push_str(&format!(
        "| batched produce (1000/batch, fsync=never), 1 KiB, vs Iggy QUIC 31k msg/s (reference, not run here) | {:.0} msg/s | 31000 msg/s | {:.2}x | >= 5.0x |\n",
        rate(&s_batch_1k),
        rate(&s_batch_1k) / 31_000.0
    ));
    table.push_str(&format!(
        "| idle broker RSS | {} MiB | {} MiB | | sluice <= 30 MiB |\n",
        sluice_idle.map_or("?".into(), |k| (k / 1024).to_string()),
        nats_idle.map_or("?".into(), |k| (k / 1024).to_string()),
    ));
    let mib = |v: &Value| {
        v.as_f64()
            .map_or("?".to_owned(), |b| format!("{:.1}", b / 1048576.0))
    };
    let added = match (
        s_conns["rss_held_bytes"].as_f64(),
        s_conns["rss_before_bytes"].as_f64(),
    ) {
        (Some(h), Some(b)) => format!("{:.1}", (h - b) / 1048576.0),
        _ => "?".into(),
    };
    table.push_str(&format!(
        "| 1,000 idle connections: broker RSS {} -> {} MiB | +{added} MiB | | | <= +100 MiB |\n",
        mib(&s_conns["rss_before_bytes"]),
        mib(&s_conns["rss_held_bytes"]),
    ));
    table.push_str(&format!(
        "\nLatency detail (p50/p99/p99.9 µs): sluice fsync=always {}/{}/{}, fsync=interval {}/{}/{}; JetStream {}/{}/{}.\n",
        s_latency["p50_us"],
        s_latency["p99_us"],
        s_latency["p999_us"],
        s_latency_interval["p50_us"],
        s_latency_interval["p99_us"],
        s_latency_interval["p999_us"],
        n_latency["p50_us"],
        n_latency["p99_us"],
        n_latency["p999_us"],
    ));
    write_table(&table, "bench-vs-nats.md")
}

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
