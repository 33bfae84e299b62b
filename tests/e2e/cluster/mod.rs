//! Cluster mode: sluice nodes over a real 3-server NATS JetStream cluster
//! (nats-server 2.15 on 127.0.0.1, `sync_interval: always`), clients over
//! QUIC. Topics, replay and live fan-out across nodes; topic admin seen
//! from every node; de-duplication across nodes; groups whose members sit
//! on different nodes; the checks a node makes before it serves.
//! One module per theme; the cluster they start is here.

mod checks;
mod console;
mod groups;
mod plugins;
mod requests;
mod state;
mod topics;

use std::time::Duration;

use anyhow::Context;
use sluice_client::Client;
use sluice_tests::{NatsCluster, NatsOptions, TestBroker};

/// A NATS cluster and sluice nodes on it, dropped nodes first.
pub struct Cluster {
    pub nodes: Vec<TestBroker>,
    pub nats: NatsCluster,
}

/// The `[cluster]` table of a node on `nats`.
pub fn cluster_config(nats: &NatsCluster) -> sluice::config::ClusterConfig {
    sluice::config::ClusterConfig {
        nats: nats.urls(),
        replicas: 3,
        node: None,
        creds: None,
        token: None,
        tls_ca: None,
        monitor: nats.monitor_urls(),
        require_fsync: true,
        request_timeout: Duration::from_secs(5),
    }
}

impl Cluster {
    /// Three NATS servers and `nodes` sluice nodes. The nodes present one
    /// certificate (the first node's), as nodes of one cluster do, so a
    /// client trusts them all with one CA.
    pub async fn start(nodes: usize) -> anyhow::Result<Cluster> {
        Cluster::start_with(nodes, |_, _| {}).await
    }

    /// The same, with node `i`'s configuration adjusted by `configure`.
    pub async fn start_with(
        nodes: usize,
        configure: impl Fn(usize, &mut sluice::Config),
    ) -> anyhow::Result<Cluster> {
        let nats = NatsCluster::start(NatsOptions::default()).await?;
        let mut started: Vec<TestBroker> = Vec::new();
        for i in 0..nodes {
            let mut config = cluster_config(&nats);
            config.node = Some(format!("node-{i}"));
            let shared = started.first().map(|first| {
                (
                    first.cert_path().to_path_buf(),
                    first.data_dir().join("tls/key.pem"),
                )
            });
            let configure = &configure;
            let node = TestBroker::start_with(move |c| {
                configure(i, c);
                c.cluster = Some(config);
                if let Some((cert, key)) = shared {
                    c.server.cert = Some(cert);
                    c.server.key = Some(key);
                }
            })
            .await
            .with_context(|| format!("starting sluice node {i}"))?;
            started.push(node);
        }
        Ok(Cluster {
            nodes: started,
            nats,
        })
    }

    /// A client of node `i`.
    pub async fn client(&self, i: usize) -> anyhow::Result<Client> {
        self.nodes[i].client().await
    }
}
