//! [`Distribution`]: where a deployed plugin version goes and whose status
//! `plugin list` shows. On one machine ([`LocalDistribution`]) a deploy
//! replaces the plugin's file and reloads it; in a cluster the shared
//! plugins (`crate::cluster`) store it for every node.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::{BoxFuture, FutureExt};
use sluice_proto::PluginStatus;

use super::{PluginError, PluginRegistry};

/// Deploying plugin versions and reading plugin status.
pub trait Distribution: Send + Sync + 'static {
    /// Checks `wasm` as a new version of plugin `name` (it must compile and
    /// `init` with the plugin's config), then puts it in force wherever
    /// the plugin runs. Resolves with the version's hash.
    fn deploy(&self, name: &str, wasm: bytes::Bytes) -> BoxFuture<'_, Result<String, PluginError>>;

    /// The plugins' status: this broker's, or every node's in a cluster.
    fn status(&self) -> BoxFuture<'_, Vec<PluginStatus>>;

    /// Whether shadow and canary rollouts can run here: on one machine
    /// they do; a cluster would need each node to run the same one.
    fn supports_rollouts(&self) -> bool {
        true
    }
}

/// Checks a new version of `name` against `registry` off the async workers.
pub async fn check(
    registry: &Arc<PluginRegistry>,
    name: &str,
    wasm: &bytes::Bytes,
) -> Result<(String, std::path::PathBuf), PluginError> {
    let (registry, name, wasm) = (registry.clone(), name.to_owned(), wasm.clone());
    tokio::task::spawn_blocking(move || registry.check_version(&name, &wasm))
        .await
        .map_err(|e| PluginError::Engine {
            reason: format!("the check of the new version failed: {e}"),
        })?
}

/// One machine: a deploy writes the plugin's file (renamed into place)
/// and reloads it, as the file watcher would.
pub struct LocalDistribution {
    registry: Arc<PluginRegistry>,
}

impl LocalDistribution {
    /// Deploys into `registry`'s files.
    pub fn new(registry: Arc<PluginRegistry>) -> LocalDistribution {
        LocalDistribution { registry }
    }
}

impl Distribution for LocalDistribution {
    fn deploy(&self, name: &str, wasm: bytes::Bytes) -> BoxFuture<'_, Result<String, PluginError>> {
        let name = name.to_owned();
        async move {
            let since = Instant::now();
            let (hash, path) = check(&self.registry, &name, &wasm).await?;
            let failed = |e: std::io::Error| PluginError::Store {
                plugin: name.clone(),
                reason: format!("{}: {e}", path.display()),
            };
            let tmp = path.with_extension("wasm.deploy");
            tokio::fs::write(&tmp, &wasm).await.map_err(failed)?;
            tokio::fs::rename(&tmp, &path).await.map_err(failed)?;
            let registry = self.registry.clone();
            let changed: HashSet<_> = [path].into();
            let report =
                tokio::task::spawn_blocking(move || registry.reload_files(&changed, since))
                    .await
                    .map_err(|e| PluginError::Engine {
                        reason: format!("the reload failed: {e}"),
                    })?;
            if let Some((_, error)) = report.refused.into_iter().next() {
                return Err(PluginError::Store {
                    plugin: name,
                    reason: error,
                });
            }
            tracing::info!(plugin = %name, version = %hash, "plugin deployed");
            Ok(hash)
        }
        .boxed()
    }

    fn status(&self) -> BoxFuture<'_, Vec<PluginStatus>> {
        std::future::ready(self.registry.status()).boxed()
    }
}
