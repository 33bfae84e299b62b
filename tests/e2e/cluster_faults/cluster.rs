//! [`FaultCluster`]: 3 nats-servers and 2 sluice nodes run as child
//! processes (`sluice-under-test serve`), so that a node can be SIGKILLed
//! and restarted on its address. The nodes present one certificate, as the
//! nodes of a cluster do, so a client given both addresses trusts both.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use sluice_client::{Client, ClientOptions, Trust};
use sluice_tests::{bounded, ChildBroker, NatsCluster, NatsOptions, Network};
use tempfile::TempDir;

/// Sluice nodes in a cluster.
const NODES: usize = 2;

/// How long a node waits for NATS: short, so that a request to a server
/// that is gone fails soon and the clients see it.
const NATS_REQUEST_TIMEOUT: &str = "5s";

/// How long the clients keep reconnecting: longer than any fault here.
const RECONNECT: Duration = Duration::from_secs(60);

/// A dead node is noticed after this long without a packet (keep-alives
/// go every third of it); short, so that clients fail over soon.
const IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The NATS servers and the sluice nodes on them, nodes dropped (killed)
/// first. When dropped during a panic the nodes' directory (configs and
/// logs) is kept, as the NATS cluster keeps its own, and both printed.
pub struct FaultCluster {
    pub nodes: Vec<ChildBroker>,
    pub nats: NatsCluster,
    cert: PathBuf,
    /// `None` once kept.
    dir: Option<TempDir>,
}

/// The `[cluster]` table of node `i`.
fn node_toml(nats: &NatsCluster, i: usize) -> String {
    format!(
        "[cluster]\nnats = {:?}\nmonitor = {:?}\nnode = \"node-{i}\"\nrequest_timeout = \"{NATS_REQUEST_TIMEOUT}\"\n",
        nats.urls(),
        nats.monitor_urls(),
    )
}

/// Gives `to` (a node's directory) the certificate and key of the node
/// whose data directory is `from`, before it starts.
fn share_identity(from: &Path, to: &Path) -> anyhow::Result<()> {
    let tls = to.join("data").join("tls");
    std::fs::create_dir_all(&tls)?;
    for file in ["cert.pem", "key.pem"] {
        std::fs::copy(from.join("tls").join(file), tls.join(file))
            .with_context(|| format!("failed to share the nodes' {file}"))?;
    }
    Ok(())
}

impl FaultCluster {
    /// Starts the NATS cluster on `network`, then the nodes, each ready
    /// for clients.
    pub async fn start(network: Network) -> anyhow::Result<FaultCluster> {
        sluice_tests::init_tracing();
        let nats = NatsCluster::start(NatsOptions {
            network,
            ..NatsOptions::default()
        })
        .await?;
        let dir = tempfile::Builder::new()
            .prefix("sluice-faults-")
            .tempdir()?;
        let binary = Path::new(env!("CARGO_BIN_EXE_sluice-under-test"));
        let mut nodes: Vec<ChildBroker> = Vec::with_capacity(NODES);
        for i in 0..NODES {
            let node_dir = dir.path().join(format!("node-{i}"));
            std::fs::create_dir_all(&node_dir)?;
            if let Some(first) = nodes.first() {
                share_identity(first.data_dir(), &node_dir)?;
            }
            let node = ChildBroker::start(binary, &node_dir, &node_toml(&nats, i))
                .await
                .with_context(|| format!("starting sluice node-{i}"))?;
            nodes.push(node);
        }
        Ok(FaultCluster {
            cert: nodes[0].data_dir().join("tls").join("cert.pem"),
            nodes,
            nats,
            dir: Some(dir),
        })
    }

    /// Options of a client given every node's address, node `first`'s
    /// first: it connects there and fails over to the others.
    pub fn options(&self, first: usize, name: &str) -> ClientOptions {
        let addresses: Vec<String> = (0..self.nodes.len())
            .map(|k| {
                self.nodes[(first + k) % self.nodes.len()]
                    .addr()
                    .to_string()
            })
            .collect();
        let mut options = ClientOptions::new(addresses.join(","))
            .trust(Trust::CaFile(self.cert.clone()))
            .client_name(name)
            .reconnect_timeout(RECONNECT)
            .idle_timeout(IDLE_TIMEOUT);
        options.connect_timeout = CONNECT_TIMEOUT;
        options
    }

    /// A client connected to node `first` (see [`options`](Self::options)).
    pub async fn client(&self, first: usize, name: &str) -> anyhow::Result<Client> {
        let client = bounded(
            "a client connection",
            Client::connect(self.options(first, name)),
        )
        .await
        .with_context(|| format!("connecting {name} to node-{first}"))?;
        Ok(client)
    }

    /// The end of each node's log, for a failure message.
    pub fn node_logs(&self) -> String {
        (self.nodes.iter().enumerate())
            .map(|(i, node)| format!("--- node-{i}:\n{}\n", node.log_tail()))
            .collect()
    }

    /// Where the nodes' configs, data and logs are.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(TempDir::path)
    }
}

impl Drop for FaultCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                eprintln!(
                    "sluice nodes: configs, logs and TLS kept in {}",
                    dir.keep().display()
                );
            }
        }
    }
}
