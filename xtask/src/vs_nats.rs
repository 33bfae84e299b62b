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
//! With `--cluster`: cluster mode instead. For `sync_interval: always` and
//! then nats-server's default, a 3-server JetStream cluster
//! ([`LocalCluster`], `GOMAXPROCS=1` per server) is driven directly by the
//! harness (an R3 stream), then through one sluice node on the same
//! cluster with no pipeline: publish throughput (1 KiB, 1,024 in flight on
//! both sides), open-loop publish latency and consume with acks. Then one
//! lone server (R1) under each sync setting, for the record. The table goes
//! to `target/bench-vs-nats-cluster.md`.

use std::io::Write;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use super::cluster::{ClusterSpec, LocalCluster};
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
fn json_lines(cmd: &mut Command) -> anyhow::Result<Vec<Value>> {
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
fn bench_node(bin: &Path, server: &str, ca: &Path, args: &[&str]) -> anyhow::Result<Value> {
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

fn nats(harness: &Path, server: &str, args: &[&str]) -> anyhow::Result<Value> {
    let mut cmd = Command::new(harness);
    cmd.arg(server).args(args);
    json_lines(&mut cmd)?
        .into_iter()
        .next()
        .context("the NATS harness printed nothing")
}

fn rate(v: &Value) -> f64 {
    v["msgs_per_s"].as_f64().unwrap_or(0.0)
}

fn p99(v: &Value) -> f64 {
    v["p99_us"].as_f64().unwrap_or(f64::NAN)
}

/// The value of option `name` in `extra`, or `default`.
fn option(extra: &[String], name: &str, default: u64) -> anyhow::Result<u64> {
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
fn binaries() -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
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

/// Runs the comparison (`--cluster`: the cluster-mode one).
pub fn bench_vs_nats(extra: &[String]) -> anyhow::Result<()> {
    let count = option(extra, "--count", 100_000)?;
    if extra.iter().any(|a| a == "--cluster") {
        return bench_cluster(count, option(extra, "--rate", CLUSTER_RATE)?);
    }
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
fn write_table(table: &str, name: &str) -> anyhow::Result<()> {
    println!("\n{table}");
    let out = root().join("target").join(name);
    std::fs::File::create(&out)?.write_all(table.as_bytes())?;
    eprintln!("xtask: table written to {}", out.display());
    Ok(())
}

/// This machine's CPU model and core count, for the tables.
fn machine() -> String {
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

/// Open-loop publish rate of the cluster latency rows (messages per
/// second): below what JetStream R3 with `sync_interval: always` sustains
/// here, so that the figures are round trips, not queueing.
const CLUSTER_RATE: u64 = 1_000;

/// CPU seconds (user + system) a process has used so far, from
/// `/proc/PID/stat` (in USER_HZ = 100 ticks per second).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of the cluster's nodes and servers while `work` runs.
fn cpu_during<T>(
    cluster: &LocalCluster,
    work: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(T, f64, f64)> {
    let (nodes, servers) = cluster.pids();
    let total = |pids: &[u32]| pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>();
    let (n0, s0) = (total(&nodes), total(&servers));
    let value = work()?;
    Ok((value, total(&nodes) - n0, total(&servers) - s0))
}

/// One sync setting's measurements: direct, then through the node.
struct ClusterRun {
    sync: &'static str,
    js_publish: Value,
    js_latency: Value,
    js_consume: Value,
    js_cpu: (f64, f64),
    node_publish: Value,
    node_latency: Value,
    node_consume: Value,
    node_cpu: (f64, f64),
}

/// `--cluster`: see the module's documentation.
fn bench_cluster(count: u64, per_second: u64) -> anyhow::Result<()> {
    let n = count.to_string();
    let latency_n = (per_second * 10).clamp(1000, count.max(1000)).to_string();
    let rate_s = per_second.to_string();
    let (nats_server, bin, harness) = binaries()?;
    let dir = std::env::temp_dir().join(format!("sluice-vs-nats-cluster-{}", std::process::id()));
    let version = Command::new(&nats_server).arg("--version").output()?;
    let nats_version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let mut runs = Vec::new();
    for (sync_always, sync) in [(true, "sync_interval: always"), (false, "default sync")] {
        let mut spec = ClusterSpec::on_free_ports(dir.join(&sync[..4]), 3, 1)?;
        spec.sync_always = sync_always;
        let mut cluster = LocalCluster::start_nats(spec, &nats_server, None)?;
        let urls = cluster.spec.nats_urls().join(",");
        let js = |args: &[&str]| nats(&harness, &urls, &[args, &["--replicas", "3"]].concat());
        let (js_publish, js_nodes, js_servers) =
            cpu_during(&cluster, || js(&["js-publish", "1024", &n]))?;
        let js_latency = js(&["js-latency", "1024", &latency_n, &rate_s])?;
        let js_consume = js(&["js-consume", "1024", &n, "4"])?;
        cluster.start_nodes(&bin)?;
        let (server, ca) = (cluster.spec.node_addrs()[0].clone(), cluster.spec.ca_path());
        let node = |args: &[&str]| bench_node(&bin, &server, &ca, args);
        // 64 messages per request, 16 requests in flight: 1,024 messages.
        let (node_publish, nodes_cpu, servers_cpu) = cpu_during(&cluster, || {
            node(&["publish", "--size", "1024", "--count", &n])
        })?;
        let node_latency = node(&[
            "latency", "--size", "1024", "--count", &latency_n, "--rate", &rate_s,
        ])?;
        let node_consume = node(&["queue", "--size", "1024", "--count", &n, "--workers", "4"])?;
        cluster.stop();
        runs.push(ClusterRun {
            sync,
            js_publish,
            js_latency,
            js_consume,
            js_cpu: (js_nodes, js_servers),
            node_publish,
            node_latency,
            node_consume,
            node_cpu: (nodes_cpu, servers_cpu),
        });
    }
    let mut lone = Vec::new();
    for sync_always in [true, false] {
        let name = if sync_always {
            "r1-always"
        } else {
            "r1-default"
        };
        let mut spec = ClusterSpec::on_free_ports(dir.join(name), 1, 0)?;
        spec.sync_always = sync_always;
        let cluster = LocalCluster::start_nats(spec, &nats_server, None)?;
        let url = cluster.spec.nats_urls().join(",");
        lone.push(nats(
            &harness,
            &url,
            &["js-publish", "1024", &n, "--replicas", "1"],
        )?);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut table = format!(
        "Machine: {}; {nats_version}; 3 servers on loopback (GOMAXPROCS=1 each), one sluice node with no pipeline; {count} messages of 1 KiB per throughput run, 1,024 in flight; latency open loop at {per_second} msg/s.\n\n",
        machine()
    );
    table.push_str("| scenario | sluice node | JetStream R3 direct | sluice/JetStream | goal |\n|---|---:|---:|---:|---|\n");
    for r in &runs {
        let (s, j) = (rate(&r.node_publish), rate(&r.js_publish));
        table.push_str(&format!(
            "| publish 1 KiB, 1,024 in flight, {} | {s:.0} msg/s | {j:.0} msg/s | {:.2}x | >= 0.8x |\n",
            r.sync,
            s / j
        ));
        for q in ["p50_us", "p99_us"] {
            let (s, j) = (
                r.node_latency[q].as_f64().unwrap_or(f64::NAN),
                r.js_latency[q].as_f64().unwrap_or(f64::NAN),
            );
            table.push_str(&format!(
                "| publish latency {} at {per_second} msg/s, {} | {s:.0} µs | {j:.0} µs | {:.2}x | |\n",
                &q[..3],
                r.sync,
                s / j
            ));
        }
        let (s, j) = (rate(&r.node_consume), rate(&r.js_consume));
        table.push_str(&format!(
            "| consume with acks, 4 workers, {} | {s:.0} msg/s | {j:.0} msg/s | {:.2}x | |\n",
            r.sync,
            s / j
        ));
    }
    table.push_str(&format!(
        "\nJetStream R1 (one server), publish 1 KiB, 1,024 in flight: sync_interval always {:.0} msg/s, default {:.0} msg/s.\n",
        rate(&lone[0]),
        rate(&lone[1])
    ));
    for r in &runs {
        let per = |cpu: f64, v: &Value| cpu * 1e6 / v["messages"].as_f64().unwrap_or(f64::NAN);
        table.push_str(&format!(
            "\n{}: CPU per published message: through the node {:.0} µs in the node + {:.0} µs in the servers; direct {:.0} µs in the servers. Latency p50/p99/p99.9 µs: node {}/{}/{}, direct {}/{}/{}.\n",
            r.sync,
            per(r.node_cpu.0, &r.node_publish),
            per(r.node_cpu.1, &r.node_publish),
            per(r.js_cpu.1, &r.js_publish),
            r.node_latency["p50_us"], r.node_latency["p99_us"], r.node_latency["p999_us"],
            r.js_latency["p50_us"], r.js_latency["p99_us"], r.js_latency["p999_us"],
        ));
    }
    write_table(&table, "bench-vs-nats-cluster.md")
}
