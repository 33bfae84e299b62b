//! `cargo xtask cluster`: a sluice cluster on this machine, laid out the
//! way it would run on three: three nats-server processes forming one
//! JetStream cluster (R3, `sync_interval: always`, `GOMAXPROCS=1` each) and
//! two sluice nodes over it with `examples/sluice.toml`'s plugins and
//! pipeline, every node presenting a certificate from one CA. It prints
//! where everything listens and runs until Ctrl-C, then stops the nodes
//! (SIGTERM, waited for) and then the servers. A child that exits on its
//! own stops the rest.
//!
//! Everything lives in `sluice-cluster/` at the project root, and a second
//! run restarts on it (same stores, same certificates; the node configs
//! are written again from `examples/sluice.toml`):
//!
//! ```text
//! sluice-cluster/
//!   nats-1/   nats.conf, nats.log, jetstream/ (the store)   ... nats-3/
//!   node-1/   sluice.toml (generated), sluice.log, plugin-cache/, node-2/
//!   tls/      ca.pem, ca-key.pem, node-1.pem, node-1-key.pem, ...
//! ```
//!
//! [`LocalCluster`] is also what `cargo xtask bench-vs-nats --cluster`
//! ([`bench`]) starts, on free ports in a temporary directory.
//!
//! # Layout
//!
//! - here: the command and [`LocalCluster`]: starting, readiness, stopping.
//! - [`spec`]: the ports, each server's `nats.conf`, each node's `sluice.toml`.
//! - [`tls`]: the CA and the node certificates.
//! - [`process`]: the child processes and the signals that stop them.
//! - [`bench`]: `cargo xtask bench-vs-nats --cluster`.

mod bench;
mod process;
mod spec;
mod tls;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use super::nats::ensure_nats_server;
use super::{cargo, plugins, root, run};
pub use bench::bench_cluster;
use process::{terminate, Process, Signals};
pub use spec::ClusterSpec;
use spec::{nats_config, node_config};
pub(crate) use tls::ensure_tls;
use tls::write_file;

/// How long the NATS cluster and the nodes may take to become ready; a
/// restart replays the servers' Raft logs first.
const READY_LIMIT: Duration = Duration::from_secs(60);

/// How often readiness is probed (a few loopback requests each time).
const PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// How long one monitoring request may take.
const HTTP_LIMIT: Duration = Duration::from_secs(2);

/// A GET on a loopback port: the status and the body.
fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_LIMIT)?;
    stream.set_read_timeout(Some(HTTP_LIMIT))?;
    stream.set_write_timeout(Some(HTTP_LIMIT))?;
    // HTTP/1.0: the server closes after one response, never chunked.
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok());
    match (status, response.split_once("\r\n\r\n")) {
        (Some(status), Some((_, body))) => Ok((status, body.to_owned())),
        _ => bail!("GET {addr}{path}: not an HTTP response"),
    }
}

/// A monitoring endpoint as JSON, if it answers 200.
fn monitor(port: u16, path: &str) -> Result<Value, String> {
    match http_get(port, path) {
        Ok((200, body)) => serde_json::from_str(&body).map_err(|e| format!("{path}: {e}")),
        Ok((status, body)) => Err(format!("{path}: {status} {}", body.trim())),
        Err(e) => Err(format!("{path}: {e:#}")),
    }
}

/// A running cluster: its servers and nodes, stopped (nodes first) when
/// dropped.
pub struct LocalCluster {
    pub spec: ClusterSpec,
    servers: Vec<Process>,
    nodes: Vec<Process>,
    signals: Option<Signals>,
}

impl LocalCluster {
    /// Starts the NATS servers of `spec` (the binary `nats_server`) and
    /// waits until they are healthy with JetStream and, when there are
    /// several, their meta group has formed. With `signals`, the children
    /// run in their own process groups and a signal stops the start.
    pub fn start_nats(
        spec: ClusterSpec,
        nats_server: &Path,
        signals: Option<Signals>,
    ) -> anyhow::Result<Self> {
        let mut cluster = LocalCluster {
            spec,
            servers: Vec::new(),
            nodes: Vec::new(),
            signals,
        };
        for i in 0..cluster.spec.nats.len() {
            let dir = cluster.spec.dir.join(format!("nats-{}", i + 1));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
            let config = dir.join("nats.conf");
            write_file(&config, &nats_config(&cluster.spec, i, &dir), false)?;
            let mut cmd = Command::new(nats_server);
            // One thread each, so that servers starved on a small machine
            // do not call elections (as the cluster tests run them).
            cmd.arg("-c").arg(&config).env("GOMAXPROCS", "1");
            let own_group = cluster.signals.is_some();
            let process = Process::spawn(
                format!("nats-{}", i + 1),
                &mut cmd,
                dir.join("nats.log"),
                own_group,
            )?;
            cluster.servers.push(process);
        }
        cluster.wait_until("the NATS servers", |c| c.nats_state())?;
        Ok(cluster)
    }

    /// Writes each node's config, starts `sluice serve` (the binary
    /// `sluice`) for each and waits until each answers `/healthz`.
    pub fn start_nodes(&mut self, sluice: &Path) -> anyhow::Result<()> {
        let examples = root().join("examples");
        let example_path = examples.join("sluice.toml");
        let example = std::fs::read_to_string(&example_path)
            .with_context(|| format!("failed to read {}", example_path.display()))?;
        ensure_tls(&self.spec.tls_dir(), self.spec.nodes.len())?;
        for i in 0..self.spec.nodes.len() {
            let name = format!("node-{}", i + 1);
            let dir = self.spec.dir.join(&name);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
            let config = dir.join("sluice.toml");
            write_file(
                &config,
                &node_config(&self.spec, i, &example, &examples)?,
                false,
            )?;
            let mut cmd = Command::new(sluice);
            cmd.args(["serve", "--config"])
                .arg(&config)
                .current_dir(&dir);
            let own_group = self.signals.is_some();
            self.nodes.push(Process::spawn(
                name,
                &mut cmd,
                dir.join("sluice.log"),
                own_group,
            )?);
        }
        self.wait_until("the sluice nodes", |c| {
            for (p, ports) in c.nodes.iter().zip(&c.spec.nodes) {
                match http_get(ports.admin, "/healthz") {
                    Ok((200, _)) => {}
                    Ok((status, _)) => return Err(format!("{}: /healthz {status}", p.name)),
                    Err(e) => return Err(format!("{}: /healthz: {e:#}", p.name)),
                }
            }
            Ok(())
        })
    }

    /// Waits at most [`READY_LIMIT`] until `state` is `Ok`; fails when a
    /// child exits or a signal comes meanwhile.
    fn wait_until(
        &mut self,
        what: &str,
        state: impl Fn(&Self) -> Result<(), String>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            if let Some(failure) = self.exited() {
                bail!("{failure}");
            }
            let waiting = match state(self) {
                Ok(()) => return Ok(()),
                Err(waiting) => waiting,
            };
            if Instant::now() >= deadline {
                let logs: Vec<String> = self
                    .servers
                    .iter()
                    .chain(&self.nodes)
                    .map(Process::log_tail)
                    .collect();
                bail!(
                    "{what} were not ready within {READY_LIMIT:?}: {waiting}\n{}",
                    logs.join("\n")
                );
            }
            if self.pause(PROBE_INTERVAL) {
                bail!("interrupted while waiting for {what}");
            }
        }
    }

    /// Sleeps; whether a signal asked to stop.
    fn pause(&mut self, wait: Duration) -> bool {
        match &mut self.signals {
            Some(signals) => signals.wait(wait),
            None => {
                std::thread::sleep(wait);
                false
            }
        }
    }

    /// Healthy with JetStream, and for a cluster: a meta leader that counts
    /// every other server as current (the meta group has formed).
    fn nats_state(&self) -> Result<(), String> {
        let mut leader = None;
        for (i, ports) in self.spec.nats.iter().enumerate() {
            let name = format!("nats-{}", i + 1);
            monitor(ports.http, "/healthz?js-enabled-only=true")
                .map_err(|e| format!("{name}: {e}"))?;
            if self.spec.nats.len() == 1 {
                return Ok(());
            }
            let jsz = monitor(ports.http, "/jsz").map_err(|e| format!("{name}: {e}"))?;
            match jsz["meta_cluster"]["leader"].as_str() {
                Some(l) if l == name => leader = Some(jsz),
                Some(l) if !l.is_empty() => {}
                _ => return Err(format!("{name}: no meta leader yet")),
            }
        }
        let jsz = leader.ok_or("no server says it leads the meta group")?;
        let leader = jsz["meta_cluster"]["leader"].as_str().unwrap_or("");
        let replicas = jsz["meta_cluster"]["replicas"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let current = |name: &str| {
            replicas
                .iter()
                .any(|r| r["name"] == name && r["current"] == true)
        };
        let behind: Vec<String> = (1..=self.spec.nats.len())
            .map(|n| format!("nats-{n}"))
            .filter(|n| n != leader && !current(n))
            .collect();
        match behind.is_empty() {
            true => Ok(()),
            false => Err(format!(
                "meta leader {leader} does not count {behind:?} as current"
            )),
        }
    }

    /// The first child found to have exited, as a message with its log.
    fn exited(&mut self) -> Option<String> {
        let processes = self.nodes.iter_mut().chain(&mut self.servers);
        processes
            .filter_map(|p| {
                p.exited().map(|status| {
                    format!("{} exited on its own ({status})\n{}", p.name, p.log_tail())
                })
            })
            .next()
    }

    /// Runs until a signal or until a child exits (then fails, naming it);
    /// either way everything is stopped, nodes first.
    fn serve_until_stopped(&mut self) -> anyhow::Result<()> {
        loop {
            if let Some(failure) = self.exited() {
                eprintln!("xtask: {failure}\nxtask: stopping the rest");
                self.stop();
                let first = failure.lines().next().unwrap_or_default();
                bail!("{first}; the rest of the cluster was stopped (its log is above)");
            }
            if self.pause(Duration::from_millis(250)) {
                eprintln!("\nxtask: stopping the nodes, then the NATS servers");
                self.stop();
                return Ok(());
            }
        }
    }

    /// Stops the nodes, then the servers.
    pub fn stop(&mut self) {
        terminate(&mut self.nodes);
        terminate(&mut self.servers);
    }

    /// The process ids of the running nodes and of the running servers.
    pub fn pids(&self) -> (Vec<u32>, Vec<u32>) {
        let ids = |ps: &[Process]| ps.iter().filter_map(Process::id).collect();
        (ids(&self.nodes), ids(&self.servers))
    }

    /// The index of the server a client named `name` is connected to, from
    /// each server's `/connz`.
    pub fn server_of(&self, name: &str) -> Option<usize> {
        (self.spec.nats.iter().enumerate()).find_map(|(i, ports)| {
            let connz = monitor(ports.http, "/connz").ok()?;
            let clients = connz["connections"].as_array()?;
            clients.iter().any(|c| c["name"] == name).then_some(i)
        })
    }

    /// The server (`nats-N`) leading the first stream whose name starts
    /// with `prefix`, as the servers' `/jsz` say.
    pub fn stream_leader(&self, prefix: &str) -> Option<String> {
        self.spec.nats.iter().find_map(|ports| {
            let jsz = monitor(ports.http, "/jsz?accounts=true&streams=true").ok()?;
            let accounts = jsz["account_details"].as_array()?.iter();
            let streams = accounts
                .filter_map(|a| a["stream_detail"].as_array())
                .flatten();
            let mut found =
                streams.filter(|s| s["name"].as_str().is_some_and(|n| n.starts_with(prefix)));
            let leader = found.next()?["cluster"]["leader"].as_str()?;
            (!leader.is_empty()).then(|| leader.to_owned())
        })
    }

    /// Node `i`'s log file.
    pub fn node_log(&self, i: usize) -> &Path {
        &self.nodes[i].log
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `path` relative to the current directory when it is under it.
fn shown(path: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    path.strip_prefix(&cwd)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// What runs where, and commands to try.
fn print_summary(cluster: &LocalCluster) {
    let spec = &cluster.spec;
    let mut out = format!(
        "\nsluice cluster is up; files in {}/ (a second run restarts on them)\n\n",
        shown(&spec.dir)
    );
    for (i, (ports, addr)) in spec.nodes.iter().zip(spec.node_addrs()).enumerate() {
        out.push_str(&format!(
            "  node-{n}   QUIC {addr}   admin http://127.0.0.1:{admin} (/metrics, /healthz)   log {log}\n",
            n = i + 1,
            admin = ports.admin,
            log = shown(cluster.node_log(i)),
        ));
    }
    for (i, (url, monitor)) in spec.nats_urls().iter().zip(spec.monitor_urls()).enumerate() {
        out.push_str(&format!(
            "  nats-{}   {url}   monitoring {monitor}\n",
            i + 1
        ));
    }
    let ca = shown(&spec.ca_path());
    let servers = spec.node_addrs().join(",");
    let nodes = spec.node_addrs();
    let (first, last) = (&nodes[0], &nodes[nodes.len() - 1]);
    out.push_str(&format!(
        "  CA       {ca}   (every node's certificate comes from it)\n\n\
         Try, in another terminal (alias sluice={sluice}):\n\
         \x20 sluice sub 'orders.>' --server {last} --ca {ca}\n\
         \x20 sluice pub orders.incoming '{{\"id\":\"o-1\",\"region\":\"eu\",\"total\":42}}' -H region=eu --server {servers} --ca {ca}\n\
         \x20 sluice pub demo 'hello {{n}}' --count 10 --server {first} --ca {ca}\n\
         \x20 sluice sub demo --from earliest --server {last} --ca {ca}\n\
         \x20 sluice topics --server {last} --ca {ca}\n\
         \x20 sluice plugin list --server {servers} --ca {ca}\n\n\
         Ctrl-C stops the nodes, then the NATS servers.\n",
        sluice = shown(&root().join("target/release/sluice")),
    ));
    println!("{out}");
}

/// `cargo xtask cluster`.
pub fn cluster(args: &[String]) -> anyhow::Result<()> {
    if let Some(unknown) = args.first() {
        bail!("cargo xtask cluster takes no arguments, not {unknown:?}; its layout is in examples/cluster/README.md");
    }
    let nats_server = ensure_nats_server()?;
    plugins()?;
    run(cargo().args(["build", "--release", "-p", "sluice", "--bin", "sluice"]))?;
    let spec = ClusterSpec::local();
    spec.check_ports_free()?;
    let signals = Signals::catch()?;
    let mut cluster = LocalCluster::start_nats(spec, &nats_server, Some(signals))?;
    eprintln!("xtask: the NATS cluster is ready; starting the sluice nodes");
    cluster.start_nodes(&root().join("target/release/sluice"))?;
    print_summary(&cluster);
    cluster.serve_until_stopped()
}
