//! Plugins and pipelines shared by the nodes of a cluster.
//!
//! The `[[plugin]]` and `[[pipeline]]` sections live in the `sluice-config`
//! bucket (one entry, [`SETTINGS_KEY`]) and every plugin's wasm in the
//! `sluice-wasm` object store, under the plugin's name. The bucket wins: a
//! node's own `sluice.toml` sections only seed an empty bucket, and a node
//! whose file differs says so once at start.
//!
//! Each node keeps a copy of every plugin's wasm in
//! `<data_dir>/cluster-plugins/<name>.wasm` and loads it from there. When
//! the bucket or a wasm object changes (`sluice plugin deploy`, another
//! node's seed), the node writes the new file (renamed into place) and
//! reloads the way the file watcher does: compiled off the hot path, then
//! swapped between two batches, so every message is handled by exactly one
//! version.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{kv, object_store};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, PipelineConfig, PluginConfig};
use crate::nats::Nats;
use crate::plugin::PluginRegistry;
use crate::sync::lock;

/// How often a node looks at the cluster's plugins even when no watch
/// said they changed.
const RESYNC_EVERY: Duration = Duration::from_secs(5);

/// The bucket of the shared `[[plugin]]` and `[[pipeline]]` sections.
pub const SETTINGS_BUCKET: &str = "sluice-config";
/// Its one entry.
pub const SETTINGS_KEY: &str = "plugins";
/// The object store of the plugins' wasm, by plugin name.
pub const WASM_BUCKET: &str = "sluice-wasm";

/// Why the shared plugins cannot be read, stored or loaded.
#[derive(Debug, thiserror::Error)]
pub enum SharedPluginsError {
    /// The cluster did not answer or refused.
    #[error("cluster plugins: {0}")]
    Cluster(String),
    /// A plugin file of this node's config could not be read for seeding.
    #[error("cannot read plugin file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A local copy could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No `[[plugin]]` of that name in the cluster's settings.
    #[error("no plugin {0:?} in the cluster's settings (deploy replaces the wasm of a configured [[plugin]])")]
    UnknownPlugin(String),
    /// The shared settings are not valid.
    #[error("the cluster's plugin settings are not valid: {0}")]
    Invalid(String),
}

fn cluster(e: impl std::fmt::Display) -> SharedPluginsError {
    SharedPluginsError::Cluster(e.to_string())
}

/// The shared sections. A plugin's `path` is its wasm object's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Settings {
    plugins: Vec<PluginConfig>,
    pipelines: Vec<PipelineConfig>,
}

/// The plugins of a cluster as one node uses them. Cheap to clone.
#[derive(Clone)]
pub struct SharedPlugins {
    inner: Arc<Inner>,
}

struct Inner {
    nats: Nats,
    settings: kv::Store,
    wasm: object_store::ObjectStore,
    /// Where this node keeps its copies.
    dir: PathBuf,
    /// This node's configuration (its own sections are only seeds).
    node_config: Config,
    /// The object id of each plugin's version copied here.
    copied: Mutex<HashMap<String, String>>,
}

impl SharedPlugins {
    /// Opens the shared settings (seeding them from `config` when the
    /// cluster has none), writes this node's copies of the wasm, and
    /// returns the configuration the node runs with: `config` with the
    /// cluster's plugins and pipelines.
    pub async fn open(
        nats: &Nats,
        config: &Config,
    ) -> Result<(SharedPlugins, Config), SharedPluginsError> {
        let settings = crate::store::jetstream::open_bucket(nats, SETTINGS_BUCKET)
            .await
            .map_err(cluster)?;
        let wasm = match nats.jetstream.get_object_store(WASM_BUCKET).await {
            Ok(store) => store,
            Err(_) => nats
                .retrying(|| {
                    nats.jetstream.create_object_store(object_store::Config {
                        bucket: WASM_BUCKET.to_owned(),
                        num_replicas: nats.replicas,
                        ..Default::default()
                    })
                })
                .await
                .map_err(cluster)?,
        };
        let shared = SharedPlugins {
            inner: Arc::new(Inner {
                nats: nats.clone(),
                settings,
                wasm,
                dir: crate::plugin::watch::normalize(
                    &std::path::absolute(config.server.data_dir.join("cluster-plugins")).map_err(
                        |source| SharedPluginsError::Write {
                            path: config.server.data_dir.clone(),
                            source,
                        },
                    )?,
                ),
                node_config: config.clone(),
                copied: Mutex::new(HashMap::new()),
            }),
        };
        let current = match shared.read_settings().await? {
            Some(current) => {
                if !same_sections(&current, &own_settings(config)) {
                    tracing::warn!("this node's [[plugin]]/[[pipeline]] sections differ from the cluster's; the cluster's are used (deploy with `sluice plugin deploy`)");
                }
                current
            }
            None => shared.seed(config).await?,
        };
        let effective = shared.materialize(&current).await?;
        Ok((shared, effective))
    }

    async fn read_settings(&self) -> Result<Option<Settings>, SharedPluginsError> {
        let Some(bytes) = self
            .inner
            .nats
            .retrying(|| self.inner.settings.get(SETTINGS_KEY))
            .await
            .map_err(cluster)?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| SharedPluginsError::Invalid(e.to_string()))
    }

    /// Stores this node's sections and wasm as the cluster's; if another
    /// node did first, theirs are used.
    async fn seed(&self, config: &Config) -> Result<Settings, SharedPluginsError> {
        for plugin in &config.plugins {
            let spec = crate::plugin::spec_from_config(config, plugin);
            let bytes =
                tokio::fs::read(&spec.path)
                    .await
                    .map_err(|source| SharedPluginsError::Read {
                        path: spec.path.clone(),
                        source,
                    })?;
            self.put_wasm(&plugin.name, &bytes).await?;
        }
        let settings = own_settings(config);
        let value = serde_json::to_vec(&settings).map_err(cluster)?;
        let value = bytes::Bytes::from(value);
        match self
            .inner
            .nats
            .retrying(|| self.inner.settings.create(SETTINGS_KEY, value.clone()))
            .await
        {
            Ok(_) => {
                tracing::info!(
                    plugins = settings.plugins.len(),
                    pipelines = settings.pipelines.len(),
                    "seeded the cluster's plugins and pipelines from this node's config"
                );
                Ok(settings)
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => self
                .read_settings()
                .await?
                .ok_or_else(|| cluster("the plugin settings vanished while seeding")),
            Err(e) => Err(cluster(e)),
        }
    }

    async fn put_wasm(&self, name: &str, bytes: &[u8]) -> Result<(), SharedPluginsError> {
        self.inner
            .nats
            .retrying(|| async {
                let mut reader = bytes;
                self.inner.wasm.put(name, &mut reader).await
            })
            .await
            .map_err(cluster)?;
        Ok(())
    }

    /// Writes this node's copy of every plugin in `settings` that differs,
    /// and returns the node's configuration with the cluster's sections.
    async fn materialize(&self, settings: &Settings) -> Result<Config, SharedPluginsError> {
        tokio::fs::create_dir_all(&self.inner.dir)
            .await
            .map_err(|source| SharedPluginsError::Write {
                path: self.inner.dir.clone(),
                source,
            })?;
        let mut plugins = Vec::with_capacity(settings.plugins.len());
        for plugin in &settings.plugins {
            let path = self.local_path(&plugin.name);
            self.download(&plugin.name, &path).await?;
            plugins.push(PluginConfig {
                path,
                ..plugin.clone()
            });
        }
        let mut config = self.inner.node_config.clone();
        config.plugins = plugins;
        config.pipelines = settings.pipelines.clone();
        // The bucket wins: the file's sections do not reload anything.
        config.source = None;
        config
            .validate()
            .map_err(|e| SharedPluginsError::Invalid(e.to_string()))?;
        Ok(config)
    }

    fn local_path(&self, name: &str) -> PathBuf {
        self.inner.dir.join(format!("{name}.wasm"))
    }

    /// Copies object `name` to `path` unless this node has that version
    /// already (by the object's id, so an unchanged plugin costs one
    /// request); true when the file changed.
    async fn download(&self, name: &str, path: &Path) -> Result<bool, SharedPluginsError> {
        let info = self
            .inner
            .nats
            .retrying(|| self.inner.wasm.info(name))
            .await
            .map_err(cluster)?;
        if lock(&self.inner.copied).get(name) == Some(&info.nuid) && path.exists() {
            return Ok(false);
        }
        let mut object = self
            .inner
            .nats
            .retrying(|| self.inner.wasm.get(name))
            .await
            .map_err(cluster)?;
        let mut bytes = Vec::new();
        object.read_to_end(&mut bytes).await.map_err(cluster)?;
        let unchanged = tokio::fs::read(path)
            .await
            .is_ok_and(|existing| Sha256::digest(&existing) == Sha256::digest(&bytes));
        if !unchanged {
            let tmp = path.with_extension("wasm.tmp");
            let write = |source| SharedPluginsError::Write {
                path: path.to_path_buf(),
                source,
            };
            tokio::fs::write(&tmp, &bytes).await.map_err(write)?;
            tokio::fs::rename(&tmp, path).await.map_err(write)?;
        }
        lock(&self.inner.copied).insert(name.to_owned(), info.nuid);
        Ok(!unchanged)
    }

    /// Replaces the wasm of plugin `name` for every node; returns the new
    /// version's hash (as `sluice plugin list` shows it).
    pub async fn deploy(&self, name: &str, wasm: &[u8]) -> Result<String, SharedPluginsError> {
        let settings = self.read_settings().await?.unwrap_or(Settings {
            plugins: Vec::new(),
            pipelines: Vec::new(),
        });
        if !settings.plugins.iter().any(|p| p.name == name) {
            return Err(SharedPluginsError::UnknownPlugin(name.to_owned()));
        }
        self.put_wasm(name, wasm).await?;
        let digest: [u8; 32] = Sha256::digest(wasm).into();
        Ok(crate::plugin::instance::short_hash(&digest))
    }

    /// Follows the cluster's settings and wasm until `stop`: each change is
    /// copied here and put in force in `registry`; `changed` is notified
    /// after each look. The buckets' watches make a change take effect at
    /// once; a look every [`RESYNC_EVERY`] catches what a watch missed (a
    /// watch re-created after a lost connection, a server restarting).
    pub async fn follow(
        self,
        registry: Arc<PluginRegistry>,
        changed: Arc<tokio::sync::Notify>,
        stop: CancellationToken,
    ) {
        loop {
            let watched = async {
                let settings = self
                    .inner
                    .settings
                    .watch_with_history(SETTINGS_KEY)
                    .await
                    .map_err(cluster)?;
                let objects = self.inner.wasm.watch().await.map_err(cluster)?;
                Ok::<_, SharedPluginsError>((settings, objects))
            };
            let (mut settings, mut objects) = tokio::select! {
                () = stop.cancelled() => return,
                watched = watched => match watched {
                    Ok(w) => w,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot watch the cluster's plugins; trying again");
                        if pause(&stop).await { return; }
                        continue;
                    }
                },
            };
            let mut resync = tokio::time::interval(RESYNC_EVERY);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    change = settings.next() => if !matches!(change, Some(Ok(_))) { break },
                    change = objects.next() => if !matches!(change, Some(Ok(_))) { break },
                    _ = resync.tick() => {}
                }
                self.apply(&registry, Instant::now()).await;
                changed.notify_one();
            }
            if pause(&stop).await {
                return;
            }
        }
    }

    /// Copies what changed in the cluster's settings and wasm here and puts
    /// it in force (a reload that changes nothing does nothing).
    async fn apply(&self, registry: &Arc<PluginRegistry>, since: Instant) {
        let config = match self.read_settings().await {
            Ok(Some(settings)) => self.materialize(&settings).await,
            Ok(None) => return,
            Err(e) => Err(e),
        };
        let config = match config {
            Ok(config) => config,
            Err(e) => {
                tracing::error!(error = %e, "the cluster's plugin settings or wasm cannot be used; the running plugins and pipelines stay");
                return;
            }
        };
        let registry = registry.clone();
        let _ = tokio::task::spawn_blocking(move || {
            registry.reload_with(config, "the cluster's settings", since)
        })
        .await;
    }
}

/// Waits before watching again; true when stopped meanwhile.
async fn pause(stop: &CancellationToken) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(Duration::from_secs(1)) => false,
    }
}

/// A node's own sections, each plugin's path replaced by its name.
fn own_settings(config: &Config) -> Settings {
    Settings {
        plugins: config
            .plugins
            .iter()
            .map(|p| PluginConfig {
                path: PathBuf::from(&p.name),
                ..p.clone()
            })
            .collect(),
        pipelines: config.pipelines.clone(),
    }
}

fn same_sections(a: &Settings, b: &Settings) -> bool {
    a == b
}
