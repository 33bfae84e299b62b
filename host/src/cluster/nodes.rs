//! Each node's plugin status, shared so that `sluice plugin list` on any
//! node shows every node's loaded versions: a node writes its status to the
//! `sluice-nodes` bucket every few seconds and after each reload; entries
//! expire when a node stops writing, so a node that is gone drops out.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::StorageType;
use futures_util::future::{BoxFuture, FutureExt};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sluice_proto::PluginStatus;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::plugins::{SharedPlugins, SharedPluginsError};
use crate::nats::Nats;
use crate::plugin::{Distribution, PluginError, PluginRegistry};

/// The bucket of node status entries.
pub const NODES_BUCKET: &str = "sluice-nodes";

/// How often a node writes its status.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// How long an entry outlives its node's last write.
const EXPIRES_AFTER: Duration = Duration::from_secs(30);

#[derive(Serialize, Deserialize)]
struct NodeStatus {
    node: String,
    plugins: Vec<PluginStatus>,
}

/// The cluster's [`Distribution`]: deploys go to the shared plugins, status
/// comes from every node.
pub struct ClusterDistribution {
    nats: Nats,
    shared: SharedPlugins,
    registry: Arc<PluginRegistry>,
    nodes: kv::Store,
    /// Wakes the reporter after a reload.
    changed: Arc<Notify>,
}

impl ClusterDistribution {
    /// Opens the nodes bucket and starts this node's reporting and its
    /// following of the shared plugins, until `stop`.
    pub async fn start(
        nats: Nats,
        shared: SharedPlugins,
        registry: Arc<PluginRegistry>,
        stop: CancellationToken,
    ) -> Result<(Arc<ClusterDistribution>, tokio::task::JoinHandle<()>), SharedPluginsError> {
        let config = kv::Config {
            bucket: NODES_BUCKET.to_owned(),
            history: 1,
            max_age: EXPIRES_AFTER,
            num_replicas: nats.replicas,
            storage: StorageType::File,
            ..Default::default()
        };
        let nodes = match nats.jetstream.get_key_value(NODES_BUCKET).await {
            Ok(nodes) => nodes,
            Err(_) => nats
                .retrying(|| nats.jetstream.create_key_value(config.clone()))
                .await
                .map_err(|e| SharedPluginsError::Cluster(e.to_string()))?,
        };
        let distribution = Arc::new(ClusterDistribution {
            nats,
            shared: shared.clone(),
            registry: registry.clone(),
            nodes,
            changed: Arc::new(Notify::new()),
        });
        let reporter = distribution.clone();
        let follow_stop = stop.clone();
        let task = tokio::spawn(async move {
            let follow = shared.follow(registry, reporter.changed.clone(), follow_stop);
            let report = reporter.report(stop);
            tokio::join!(follow, report);
        });
        Ok((distribution, task))
    }

    fn key(&self) -> String {
        self.nats
            .node
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '=') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    /// Writes this node's status now and then, until `stop`.
    async fn report(&self, stop: CancellationToken) {
        loop {
            let status = NodeStatus {
                node: self.nats.node.clone(),
                plugins: self.registry.status(),
            };
            if let Ok(value) = serde_json::to_vec(&status) {
                if let Err(e) = self.nodes.put(self.key(), value.into()).await {
                    tracing::debug!(error = %e, "cannot write this node's plugin status");
                }
            }
            tokio::select! {
                () = stop.cancelled() => {
                    let _ = self.nodes.delete(self.key()).await;
                    return;
                }
                () = self.changed.notified() => {}
                () = tokio::time::sleep(REPORT_EVERY) => {}
            }
        }
    }
}

impl Distribution for ClusterDistribution {
    fn deploy(&self, name: &str, wasm: bytes::Bytes) -> BoxFuture<'_, Result<String, PluginError>> {
        let name = name.to_owned();
        async move {
            let (hash, _) =
                crate::plugin::distribution::check(&self.registry, &name, &wasm).await?;
            self.shared
                .deploy(&name, &wasm)
                .await
                .map_err(|e| PluginError::Store {
                    plugin: name.clone(),
                    reason: e.to_string(),
                })?;
            tracing::info!(plugin = %name, version = %hash, "plugin deployed to the cluster");
            Ok(hash)
        }
        .boxed()
    }

    fn status(&self) -> BoxFuture<'_, Vec<PluginStatus>> {
        async move {
            let mut all = Vec::new();
            if let Ok(mut keys) = self.nodes.keys().await {
                while let Some(Ok(key)) = keys.next().await {
                    let Ok(Some(bytes)) = self.nodes.get(&key).await else {
                        continue;
                    };
                    let Ok(node) = serde_json::from_slice::<NodeStatus>(&bytes) else {
                        continue;
                    };
                    all.extend(node.plugins.into_iter().map(|mut p| {
                        p.node = Some(node.node.clone());
                        p
                    }));
                }
            }
            if all.is_empty() {
                // The bucket is not readable: this node's own, at least.
                all = self.registry.status();
                for p in &mut all {
                    p.node = Some(self.nats.node.clone());
                }
            }
            all.sort_by(|a, b| (&a.node, &a.name).cmp(&(&b.node, &b.name)));
            all
        }
        .boxed()
    }

    fn supports_rollouts(&self) -> bool {
        false
    }
}
