//! [`NatsCluster`]: real nats-server processes forming one JetStream
//! cluster, for the tests of sluice's cluster mode and their faults
//! (SIGKILL, SIGSTOP, restart on the same store, and in
//! [`Network::Namespaces`] a server cut off from the others).
//!
//! The binary is the one `cargo xtask setup` installs (nats-server 2.15.1,
//! `xtask/src/nats.rs`); `cargo xtask test` passes its path in
//! [`NATS_SERVER_ENV`]. Health and leadership are read from each server's
//! HTTP monitoring port (`/healthz`, `/varz`, `/jsz`, `/connz`).
//!
//! # Layout
//!
//! - here: [`NatsCluster`], [`NatsOptions`], [`Network`].
//! - `config.rs`: a server's configuration file.
//! - `monitor.rs`: GETs on the monitoring port and what is read from them.
//! - `netns.rs`: the namespaces, veth pairs and bridge of
//!   [`Network::Namespaces`], removed when dropped.

mod config;
mod monitor;
mod netns;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rustix::process::{kill_process, Pid, Signal};
use serde_json::Value;
use tempfile::TempDir;

use self::config::{config_text, Listen};
use self::monitor::{connection_names, http_get, meta_leader_seen_by, stream_leader_seen_by};
pub use self::netns::namespaces_unavailable;
use self::netns::Namespaces;

/// The variable naming the nats-server binary; `cargo xtask test` sets it
/// (`xtask/src/nats.rs` has the same name).
pub const NATS_SERVER_ENV: &str = "SLUICE_NATS_SERVER";

/// Where `cargo xtask setup` installs the binary, from this crate's folder.
const INSTALLED_BINARY: &str = "../target/nats-server/bin/nats-server";

/// The ports of a server alone in its namespace: the usual ones.
const NAMESPACE_PORTS: [u16; 3] = [4222, 6222, 8222];

/// How often readiness is probed: each probe is a few loopback requests,
/// rare enough not to crowd servers that run on one thread each.
const READY_PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// Lines of each server's log shown when the cluster fails.
const LOG_TAIL_LINES: usize = 20;

/// What [`NatsCluster::start`] starts.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// How many servers, named `n1`..`nN` (index 0 is `n1`); at least 2.
    pub servers: usize,
    /// `jetstream { sync_interval: always }`: every write is fsynced before
    /// it is acknowledged (the durability sluice's `fsync = "always"` gives);
    /// otherwise nats-server's default (a sync every two minutes).
    pub sync_always: bool,
    /// How long starting or restarting may take until healthy.
    pub ready_limit: Duration,
    /// Where the servers listen.
    pub network: Network,
}

/// Where the servers of a [`NatsCluster`] listen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Network {
    /// On 127.0.0.1, each on ports of its own.
    #[default]
    Loopback,
    /// Each in a network namespace of its own, joined to a bridge by a
    /// veth pair, on the usual ports of its own address; the root
    /// namespace (the sluice nodes, the test) reaches them over the
    /// bridge, and [`NatsCluster::cut`] cuts one off. Needs root and
    /// iproute2: see [`namespaces_unavailable`].
    Namespaces,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            servers: 3,
            sync_always: true,
            ready_limit: Duration::from_secs(30),
            network: Network::Loopback,
        }
    }
}

/// One server of the cluster: its addresses and files, and its process
/// while it runs.
struct Server {
    name: String,
    listen: Listen,
    config_path: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    paused: bool,
    /// Cut off from the network ([`NatsCluster::cut`]).
    cut: bool,
}

impl Server {
    fn http(&self) -> SocketAddr {
        SocketAddr::new(self.listen.host, self.listen.http)
    }
}

/// Real nats-server processes forming one JetStream cluster (on
/// 127.0.0.1, or each in a namespace of its own), each with its own store
/// in a temporary directory. Every process is killed when dropped, then
/// the namespaces are removed; when dropped during a panic, the directory
/// (logs and stores) is kept and its path printed.
pub struct NatsCluster {
    binary: PathBuf,
    servers: Vec<Server>,
    ready_limit: Duration,
    path: PathBuf,
    /// `None` once kept, after a failure.
    dir: Option<TempDir>,
    /// In [`Network::Namespaces`]; dropped after the servers are killed.
    namespaces: Option<Namespaces>,
}

/// The nats-server to run: [`NATS_SERVER_ENV`] when it names a file, else
/// the one `cargo xtask setup` installs under `target/`.
pub fn nats_server_binary() -> anyhow::Result<PathBuf> {
    let from_env = std::env::var_os(NATS_SERVER_ENV).map(PathBuf::from);
    if let Some(path) = from_env.as_ref().filter(|p| p.is_file()) {
        return Ok(path.clone());
    }
    let installed = Path::new(env!("CARGO_MANIFEST_DIR")).join(INSTALLED_BINARY);
    if installed.is_file() {
        return Ok(installed);
    }
    bail!(
        "nats-server 2.15 is missing: run `cargo xtask setup` (looked for {NATS_SERVER_ENV}={} and {})",
        from_env.map_or("(unset)".into(), |p| p.display().to_string()),
        installed.display()
    )
}

/// Picks `count` distinct free TCP ports on loopback: binds them all to
/// port 0 at once, reads them, releases them.
fn free_tcp_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("failed to pick free ports on 127.0.0.1")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Where each of `count` servers listens: free ports on 127.0.0.1, or
/// the usual ports on the address of its namespace.
fn listen_addresses(count: usize, namespaces: Option<&Namespaces>) -> anyhow::Result<Vec<Listen>> {
    let [client, cluster, http] = NAMESPACE_PORTS;
    if let Some(namespaces) = namespaces {
        return Ok((0..count)
            .map(|i| Listen {
                host: IpAddr::V4(namespaces.addr(i)),
                client,
                cluster,
                http,
            })
            .collect());
    }
    let ports = free_tcp_ports(3 * count)?;
    Ok(ports
        .chunks_exact(3)
        .map(|p| Listen {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            client: p[0],
            cluster: p[1],
            http: p[2],
        })
        .collect())
}

impl NatsCluster {
    /// Starts `options.servers` nats-servers (each with `GOMAXPROCS=1`, so
    /// that servers starved on a small machine do not call false
    /// elections) and waits, at most `options.ready_limit`, until every one
    /// is healthy with JetStream and knows a meta leader, and the leader
    /// counts every other server as current (the meta group has formed).
    /// In [`Network::Namespaces`] the namespaces are made first; that
    /// failing is an error (ask [`namespaces_unavailable`] beforehand).
    pub async fn start(options: NatsOptions) -> anyhow::Result<NatsCluster> {
        // nats-server refuses a JetStream cluster without routes.
        anyhow::ensure!(
            options.servers >= 2,
            "a NATS cluster needs at least 2 servers, not {}",
            options.servers
        );
        let binary = nats_server_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("sluice-nats-")
            .tempdir()
            .context("failed to create the cluster's temp dir")?;
        let namespaces = match options.network {
            Network::Loopback => None,
            Network::Namespaces => Some(Namespaces::create(options.servers)?),
        };
        let listens = listen_addresses(options.servers, namespaces.as_ref())?;
        let mut servers = Vec::with_capacity(options.servers);
        for (i, &listen) in listens.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let routes: Vec<SocketAddr> = (listens.iter().enumerate())
                .filter(|&(j, _)| j != i)
                .map(|(_, other)| other.route())
                .collect();
            let config_path = dir.path().join(format!("{name}.conf"));
            let store_dir = dir.path().join(&name);
            let sync = options.sync_always;
            std::fs::write(
                &config_path,
                config_text(&name, listen, &routes, &store_dir, sync),
            )
            .with_context(|| format!("failed to write {}", config_path.display()))?;
            servers.push(Server {
                log_path: dir.path().join(format!("{name}.log")),
                name,
                listen,
                config_path,
                child: None,
                paused: false,
                cut: false,
            });
        }
        let mut cluster = NatsCluster {
            binary,
            servers,
            ready_limit: options.ready_limit,
            path: dir.path().to_path_buf(),
            dir: Some(dir),
            namespaces,
        };
        for i in 0..cluster.servers.len() {
            cluster.spawn(i)?;
        }
        let all: Vec<usize> = (0..cluster.servers.len()).collect();
        cluster.wait_ready(&all).await?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let server = &mut self.servers[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&server.log_path)
            .with_context(|| format!("failed to open {}", server.log_path.display()))?;
        let mut command = match &self.namespaces {
            Some(namespaces) => namespaces.command(i, &self.binary),
            None => Command::new(&self.binary),
        };
        let child = command
            .arg("-c")
            .arg(&server.config_path)
            .env("GOMAXPROCS", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("failed to run {}", self.binary.display()))?;
        server.child = Some(child);
        server.paused = false;
        Ok(())
    }

    /// Whether server `i` runs, is not paused and not cut off: the servers
    /// that answer.
    fn serving(&self, i: usize) -> bool {
        let server = &self.servers[i];
        server.child.is_some() && !server.paused && !server.cut
    }

    /// One readiness probe of server `i`: `Ok(Err(state))` while it is not
    /// ready yet, `Err` when it exited.
    async fn probe(&mut self, i: usize) -> anyhow::Result<Result<(), String>> {
        let server = &mut self.servers[i];
        if let Some(status) = server
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            server.child = None;
            bail!("{} exited with {status}", server.name);
        }
        let name = server.name.clone();
        match http_get(server.http(), "/healthz?js-enabled-only=true").await {
            Ok((200, _)) => {}
            Ok((status, body)) => return Ok(Err(format!("{name}: healthz {status} {body}"))),
            Err(e) => return Ok(Err(format!("{name}: {e:#}"))),
        }
        match self.jsz(i).await {
            Ok(jsz) if !meta_leader_seen_by(&jsz).is_empty() => Ok(Ok(())),
            Ok(_) => Ok(Err(format!("{name}: no meta leader yet"))),
            Err(e) => Ok(Err(format!("{name}: {e:#}"))),
        }
    }

    /// Whether the meta leader counts each server in `which` as a current
    /// member of the meta group. A leader killed before its followers have
    /// caught up on the group's membership leaves them unable to elect
    /// another, so a fault test may start only after this holds.
    async fn meta_group_holds(&self, which: &[usize]) -> Result<(), String> {
        let (leader, jsz) = match self.meta_leader_jsz().await {
            Ok(Some(found)) => found,
            Ok(None) => return Err("no server says it leads the meta group".into()),
            Err(e) => return Err(format!("{e:#}")),
        };
        let replicas = jsz["meta_cluster"]["replicas"].as_array();
        let behind: Vec<&str> = (which.iter().filter(|&&i| i != leader))
            .map(|&i| self.servers[i].name.as_str())
            .filter(|&name| {
                !replicas.is_some_and(|replicas| {
                    (replicas.iter()).any(|r| r["name"] == name && r["current"] == true)
                })
            })
            .collect();
        match behind.is_empty() {
            true => Ok(()),
            false => Err(format!(
                "meta leader {} does not count {behind:?} as current",
                self.servers[leader].name
            )),
        }
    }

    /// Waits, at most the ready limit, until each server in `which` is
    /// healthy with JetStream and knows a meta leader, and the leader
    /// counts them all as current.
    async fn wait_ready(&mut self, which: &[usize]) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.ready_limit;
        loop {
            let mut waiting = Vec::new();
            for &i in which {
                match self.probe(i).await {
                    Ok(Ok(())) => {}
                    Ok(Err(state)) => waiting.push(state),
                    Err(e) => return Err(self.failure(e)),
                }
            }
            if waiting.is_empty() {
                match self.meta_group_holds(which).await {
                    Ok(()) => return Ok(()),
                    Err(state) => waiting.push(state),
                }
            }
            if Instant::now() >= deadline {
                let e = anyhow::anyhow!(
                    "the NATS cluster was not ready within {:?}: {}",
                    self.ready_limit,
                    waiting.join("; ")
                );
                return Err(self.failure(e));
            }
            tokio::time::sleep(READY_PROBE_INTERVAL).await;
        }
    }

    /// `e` with the end of every server's log, keeping the directory so
    /// the logs can be read whole.
    fn failure(&mut self, e: anyhow::Error) -> anyhow::Error {
        let kept = self.dir.take().map(TempDir::keep).is_some();
        let mut logs = String::new();
        for server in &self.servers {
            let log = std::fs::read_to_string(&server.log_path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
            logs.push_str(&format!("\n--- {}:\n{tail}", server.log_path.display()));
        }
        if kept {
            logs.push_str(&format!("\n(kept {})", self.path.display()));
        }
        e.context(format!("the end of each server's log:{logs}"))
    }

    /// How many servers the cluster has.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Whether the cluster has no server (never: [`start`](Self::start)
    /// wants two or more).
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// The `server_name` of server `i` (`n1` for 0).
    pub fn name(&self, i: usize) -> &str {
        &self.servers[i].name
    }

    /// The index of the server named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.servers.iter().position(|s| s.name == name)
    }

    /// The client URLs, `nats://<address>:<port>`, in server order.
    pub fn urls(&self) -> Vec<String> {
        (self.servers.iter())
            .map(|s| format!("nats://{}:{}", s.listen.host, s.listen.client))
            .collect()
    }

    /// The monitoring URLs, `http://<address>:<port>`, in server order.
    pub fn monitor_urls(&self) -> Vec<String> {
        (self.servers.iter())
            .map(|s| format!("http://{}", s.http()))
            .collect()
    }

    /// Where the servers listen.
    pub fn network(&self) -> Network {
        match self.namespaces {
            Some(_) => Network::Namespaces,
            None => Network::Loopback,
        }
    }

    /// The process id of server `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.servers[i].child.as_ref().map(Child::id)
    }

    /// The temporary directory: a config, a log and a store per server.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// Server `i`'s log (stdout and stderr of all its runs).
    pub fn log_path(&self, i: usize) -> &Path {
        &self.servers[i].log_path
    }

    /// SIGKILLs server `i` and reaps it; nothing if it is not running.
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        let server = &mut self.servers[i];
        if let Some(mut child) = server.child.take() {
            // std's kill is SIGKILL, which also ends a stopped process.
            child
                .kill()
                .with_context(|| format!("failed to kill {}", server.name))?;
            child.wait()?;
        }
        server.paused = false;
        Ok(())
    }

    /// Starts server `i` again (SIGKILLing it first if it runs) on the same
    /// ports and store, and waits until it is healthy, knows a meta leader
    /// and the leader counts it as current (it has rejoined).
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i)?;
        self.spawn(i)?;
        self.wait_ready(&[i]).await
    }

    fn signal(&mut self, i: usize, signal: Signal) -> anyhow::Result<()> {
        let server = &self.servers[i];
        let child =
            (server.child.as_ref()).with_context(|| format!("{} is not running", server.name))?;
        kill_process(Pid::from_child(child), signal)
            .with_context(|| format!("failed to send {signal:?} to {}", server.name))?;
        Ok(())
    }

    /// SIGSTOPs server `i`: it holds its sockets but answers nothing, as a
    /// server that hangs.
    pub fn pause(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, Signal::STOP)?;
        self.servers[i].paused = true;
        Ok(())
    }

    /// SIGCONTs server `i` after [`pause`](Self::pause).
    pub fn resume(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, Signal::CONT)?;
        self.servers[i].paused = false;
        Ok(())
    }

    /// Cuts server `i` off from the other servers and from every client
    /// (its veth goes down); it keeps running. Only in
    /// [`Network::Namespaces`].
    pub fn cut(&mut self, i: usize) -> anyhow::Result<()> {
        self.namespaces_for("cut a server off")?.cut(i)?;
        self.servers[i].cut = true;
        Ok(())
    }

    /// Joins server `i` to the network again after [`cut`](Self::cut).
    pub fn heal(&mut self, i: usize) -> anyhow::Result<()> {
        self.namespaces_for("heal a cut")?.heal(i)?;
        self.servers[i].cut = false;
        Ok(())
    }

    fn namespaces_for(&self, what: &str) -> anyhow::Result<&Namespaces> {
        self.namespaces.as_ref().with_context(|| {
            format!("cannot {what}: the servers are on loopback; start them in Network::Namespaces")
        })
    }

    /// The names of the client connections server `i` holds (sluice nodes
    /// name theirs `sluice <node>`), from its `/connz`.
    pub async fn connections(&self, i: usize) -> anyhow::Result<Vec<String>> {
        Ok(connection_names(&self.monitor(i, "/connz").await?))
    }

    /// A monitoring endpoint of server `i` as JSON; fails unless it answers
    /// 200.
    async fn monitor(&self, i: usize, path: &str) -> anyhow::Result<Value> {
        let server = &self.servers[i];
        let (status, body) = http_get(server.http(), path).await?;
        anyhow::ensure!(status == 200, "{} {path}: {status} {body}", server.name);
        serde_json::from_str(&body).with_context(|| format!("{} {path}: not JSON", server.name))
    }

    /// Server `i`'s `/varz` (its JetStream settings are under
    /// `jetstream.config`, e.g. `sync_always`).
    pub async fn varz(&self, i: usize) -> anyhow::Result<Value> {
        self.monitor(i, "/varz").await
    }

    /// Server `i`'s `/jsz` (the meta group is under `meta_cluster`).
    pub async fn jsz(&self, i: usize) -> anyhow::Result<Value> {
        self.monitor(i, "/jsz").await
    }

    /// The meta leader as the leader itself says it: the name of a serving
    /// server whose `/jsz` names itself. `None` during an election (other
    /// servers may still name a dead leader for seconds).
    pub async fn meta_leader(&self) -> anyhow::Result<Option<String>> {
        let found = self.meta_leader_jsz().await?;
        Ok(found.map(|(i, _)| self.servers[i].name.clone()))
    }

    /// The index of the server that says it leads the meta group, with its
    /// `/jsz`.
    async fn meta_leader_jsz(&self) -> anyhow::Result<Option<(usize, Value)>> {
        for i in (0..self.len()).filter(|&i| self.serving(i)) {
            let jsz = self.jsz(i).await?;
            if meta_leader_seen_by(&jsz) == self.servers[i].name {
                return Ok(Some((i, jsz)));
            }
        }
        Ok(None)
    }

    /// The server leading stream `stream` (of any account), as the leader
    /// itself says it in `/jsz?accounts=true&streams=true`: under
    /// `account_details[].stream_detail[]`, the entry whose `name` is the
    /// stream has `cluster.leader`. `None` when no serving server leads it.
    pub async fn stream_leader(&self, stream: &str) -> anyhow::Result<Option<String>> {
        for i in (0..self.len()).filter(|&i| self.serving(i)) {
            let jsz = self.monitor(i, "/jsz?accounts=true&streams=true").await?;
            let name = &self.servers[i].name;
            if stream_leader_seen_by(&jsz, stream) == Some(name.as_str()) {
                return Ok(Some(name.clone()));
            }
        }
        Ok(None)
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            if self.servers[i].paused {
                let _ = self.resume(i);
            }
            let _ = self.kill(i);
        }
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                eprintln!(
                    "NATS cluster: configs, logs and stores kept in {}",
                    dir.keep().display()
                );
            }
        }
    }
}
