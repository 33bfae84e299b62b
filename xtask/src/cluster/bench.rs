//! `cargo xtask bench-vs-nats --cluster [--count N] [--rate R]`: a sluice
//! cluster node against JetStream R3 driven directly, on the same 3-server
//! cluster, in one run.
//!
//! For `sync_interval: always` and then nats-server's default, a fresh
//! [`LocalCluster`] (3 servers, `GOMAXPROCS=1` each) and one sluice node
//! with no pipeline. The harness connects to the server the node is
//! connected to, so both sides' NATS clients sit on the same server (which
//! server leads each new stream is JetStream's choice; the table says).
//! Then, 1 KiB messages and 1,024 in flight on every publish:
//! - JetStream directly: `js-publish` (the baseline of the goal);
//!   `js-publish --msg-id --expect-stream --follow`, what a node asks of
//!   JetStream per message (a `Nats-Msg-Id`, the expected stream, and an
//!   ordered consumer reading every message back, as each node follows each
//!   topic); `js-batch`, atomic batches of 64 (one ack per batch);
//!   `js-latency` (open loop at `--rate`, default 1,000/s); `js-consume`
//!   (4 workers);
//! - through the node: `sluice bench publish` (64 x 16), `latency`, `queue`.
//!
//! The CPU the node and the servers spend per published message is read
//! from `/proc`. Last, one lone server (R1) under each sync setting,
//! `js-publish` only. The table goes to `target/bench-vs-nats-cluster.md`.

use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use super::{ClusterSpec, LocalCluster};
use crate::nats::ensure_nats_server;
use crate::vs_nats::{bench_node, binaries, machine, nats, option, rate, write_table};

/// Open-loop publish rate of the latency rows (messages per second):
/// below what JetStream R3 with `sync_interval: always` sustains here, so
/// that the figures are round trips, not queueing.
const DEFAULT_RATE: u64 = 1_000;

/// The name the node's NATS connection has (`sluice <node>`).
const NODE_CONNECTION: &str = "sluice node-1";

/// CPU seconds (user + system) a process has used so far, from
/// `/proc/PID/stat` (in USER_HZ, 100 ticks per second).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| (fields.get(i)).and_then(|f| f.parse::<f64>().ok());
    (ticks(11).unwrap_or(0.0) + ticks(12).unwrap_or(0.0)) / 100.0
}

/// One run and what it cost.
struct Run {
    result: Value,
    /// CPU µs per message in the node and in the servers.
    node_us: f64,
    servers_us: f64,
    /// Whether the stream's leader was the server the clients use.
    leader_local: Option<bool>,
}

impl Run {
    /// Runs `work`, a run on the stream named `stream*`, and measures it;
    /// the clients are on server `local` (`nats-N`).
    fn measure(
        cluster: &LocalCluster,
        stream: &str,
        local: &str,
        work: impl FnOnce() -> anyhow::Result<Value>,
    ) -> anyhow::Result<Run> {
        let (nodes, servers) = cluster.pids();
        let total = |pids: &[u32]| pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>();
        let (n0, s0) = (total(&nodes), total(&servers));
        let result = work()?;
        let per = 1e6 / result["messages"].as_f64().unwrap_or(f64::NAN);
        let leader = cluster.stream_leader(stream);
        Ok(Run {
            node_us: (total(&nodes) - n0) * per,
            servers_us: (total(&servers) - s0) * per,
            leader_local: leader.map(|l| l == local),
            result,
        })
    }

    fn row(&self, what: &str) -> String {
        let local = match self.leader_local {
            Some(true) => "yes",
            Some(false) => "no",
            None => "?",
        };
        format!(
            "| {what} | {:.0} msg/s | {:.0} | {:.0} | {local} |\n",
            rate(&self.result),
            self.node_us,
            self.servers_us
        )
    }
}

/// One sync setting's measurements.
struct Mode {
    sync: &'static str,
    js_plain: Run,
    js_like_node: Run,
    js_batch: Run,
    node: Run,
    js_latency: Run,
    node_latency: Run,
    js_consume: Run,
    node_consume: Run,
}

/// Runs one sync setting on a fresh cluster in `dir`.
fn run_mode(
    dir: &Path,
    sync_always: bool,
    [nats_server, sluice, harness]: [&Path; 3],
    [count, latency_count, per_second]: [&str; 3],
) -> anyhow::Result<Mode> {
    let mut spec = ClusterSpec::on_free_ports(dir.to_path_buf(), 3, 1)?;
    spec.sync_always = sync_always;
    let mut cluster = LocalCluster::start_nats(spec, nats_server, None)?;
    cluster.start_nodes(sluice)?;
    let i = cluster
        .server_of(NODE_CONNECTION)
        .context("the node's NATS connection is on no server")?;
    let local = format!("nats-{}", i + 1);
    let url = cluster.spec.nats_urls()[i].clone();
    let js = |args: &[&str]| nats(harness, &url, &[args, &["--replicas", "3"]].concat());
    let publish = |extra: &[&str]| js(&[&["js-publish", "1024", count], extra].concat());
    let measure = |stream: &str, work: &dyn Fn() -> anyhow::Result<Value>| {
        Run::measure(&cluster, stream, &local, work)
    };
    let js_plain = measure("benchpub", &|| publish(&[]))?;
    let like_node = ["--msg-id", "--expect-stream", "--follow"];
    let js_like_node = measure("benchpub", &|| publish(&like_node))?;
    let js_batch = measure("benchpub", &|| js(&["js-batch", "1024", count]))?;
    let js_latency = measure("benchlat", &|| {
        js(&["js-latency", "1024", latency_count, per_second])
    })?;
    let js_consume = measure("benchq", &|| js(&["js-consume", "1024", count, "4"]))?;
    let (server, ca) = (&cluster.spec.node_addrs()[0], cluster.spec.ca_path());
    let node = |args: &[&str]| bench_node(sluice, server, &ca, args);
    // 64 messages per request, 16 requests in flight: 1,024 messages.
    let node_publish = measure("SL_bench_publish", &|| {
        node(&["publish", "--size", "1024", "--count", count])
    })?;
    let latency = ["latency", "--size", "1024", "--count", latency_count];
    let node_latency = measure("SL_bench_latency", &|| {
        node(&[&latency[..], &["--rate", per_second]].concat())
    })?;
    let queue = [
        "queue",
        "--size",
        "1024",
        "--count",
        count,
        "--workers",
        "4",
    ];
    let node_consume = measure("SL_bench_queue", &|| node(&queue))?;
    Ok(Mode {
        sync: if sync_always {
            "sync_interval: always"
        } else {
            "default sync"
        },
        js_plain,
        js_like_node,
        js_batch,
        node: node_publish,
        js_latency,
        node_latency,
        js_consume,
        node_consume,
    })
}

/// `cargo xtask bench-vs-nats --cluster`.
pub fn bench_cluster(extra: &[String]) -> anyhow::Result<()> {
    let count = option(extra, "--count", 100_000)?;
    let per_second = option(extra, "--rate", DEFAULT_RATE)?;
    let (nats_server, sluice, harness) = binaries()?;
    let dir = std::env::temp_dir().join(format!("sluice-vs-nats-cluster-{}", std::process::id()));
    let version = std::process::Command::new(ensure_nats_server()?)
        .arg("--version")
        .output()?;
    let nats_version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let binaries = [nats_server.as_path(), &sluice, &harness];
    let (n, r) = (count.to_string(), per_second.to_string());
    // Ten seconds of latency samples, however many --count says.
    let latency_n = (per_second * 10).clamp(1000, 50_000).to_string();
    let mut modes = Vec::new();
    for (name, sync_always) in [("always", true), ("default", false)] {
        let strings = [n.as_str(), &latency_n, &r];
        modes.push(run_mode(&dir.join(name), sync_always, binaries, strings)?);
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
        let url = &cluster.spec.nats_urls()[0];
        lone.push(nats(&harness, url, &["js-publish", "1024", &n])?);
    }
    let _ = std::fs::remove_dir_all(&dir);
    write_table(
        &table(&modes, &lone, &nats_version, count, per_second),
        "bench-vs-nats-cluster.md",
    )
}

/// The markdown of the results.
fn table(
    modes: &[Mode],
    lone: &[Value],
    nats_version: &str,
    count: u64,
    per_second: u64,
) -> String {
    let mut t = format!(
        "Machine: {}; {nats_version}; 3 servers on loopback (GOMAXPROCS=1 each), one sluice node with no pipeline, the harness on the node's NATS server; {count} messages of 1 KiB per throughput run, 1,024 in flight; latency open loop at {per_second} msg/s.\n\n",
        machine()
    );
    t.push_str("| scenario | sluice node | JetStream R3 direct | sluice/JetStream | goal |\n|---|---:|---:|---:|---|\n");
    let ratio = |s: f64, j: f64| if j > 0.0 { s / j } else { f64::NAN };
    for m in modes {
        let s = rate(&m.node.result);
        for (what, j, goal) in [
            ("", rate(&m.js_plain.result), ">= 0.8x"),
            (
                " (JetStream with a Nats-Msg-Id per message and a follower, as a node uses it)",
                rate(&m.js_like_node.result),
                "",
            ),
        ] {
            t.push_str(&format!(
                "| publish 1 KiB, 1,024 in flight, {}{what} | {s:.0} msg/s | {j:.0} msg/s | {:.2}x | {goal} |\n",
                m.sync,
                ratio(s, j)
            ));
        }
        for q in ["p50_us", "p99_us"] {
            let (s, j) = (
                m.node_latency.result[q].as_f64(),
                m.js_latency.result[q].as_f64(),
            );
            let (s, j) = (s.unwrap_or(f64::NAN), j.unwrap_or(f64::NAN));
            t.push_str(&format!(
                "| publish latency {} at {per_second} msg/s, {} | {s:.0} µs | {j:.0} µs | {:.2}x | |\n",
                &q[..3],
                m.sync,
                ratio(s, j)
            ));
        }
        let (s, j) = (rate(&m.node_consume.result), rate(&m.js_consume.result));
        t.push_str(&format!(
            "| consume with acks, 4 workers, {} | {s:.0} msg/s | {j:.0} msg/s | {:.2}x | |\n",
            m.sync,
            ratio(s, j)
        ));
    }
    t.push_str(&format!(
        "\nJetStream R1 (one server), publish 1 KiB, 1,024 in flight: sync_interval always {:.0} msg/s, default {:.0} msg/s.\n",
        rate(&lone[0]),
        rate(&lone[1])
    ));
    t.push_str("\nEvery run, with the CPU spent per message (µs, from /proc; a consume run's includes loading the stream):\n\n| run | throughput | node CPU | servers' CPU | stream leader on the clients' server |\n|---|---:|---:|---:|---|\n");
    for m in modes {
        let runs = [
            (&m.js_plain, "JetStream publish"),
            (
                &m.js_like_node,
                "JetStream publish + Nats-Msg-Id + expected stream + a follower",
            ),
            (&m.js_batch, "JetStream atomic batches of 64"),
            (&m.node, "sluice node publish"),
            (&m.js_latency, "JetStream latency"),
            (&m.node_latency, "sluice node latency"),
            (&m.js_consume, "JetStream consume"),
            (&m.node_consume, "sluice node consume"),
        ];
        for (run, what) in runs {
            t.push_str(&run.row(&format!("{}: {what}", m.sync)));
        }
    }
    let detail = |v: &Value| format!("{}/{}/{}", v["p50_us"], v["p99_us"], v["p999_us"]);
    for m in modes {
        t.push_str(&format!(
            "\nLatency p50/p99/p99.9 µs, {}: sluice node {}, JetStream {}.\n",
            m.sync,
            detail(&m.node_latency.result),
            detail(&m.js_latency.result)
        ));
    }
    t
}
