//! What a broker is built on, chosen by the configuration: on one machine
//! the data directory's log and group journals, the config file's plugins
//! and a deploy that writes plugin files; in cluster mode ([`crate::nats`])
//! the JetStream store and groups, the cluster's plugins and a deploy that
//! reaches every node.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::{ClusterConfig, Config};
use crate::groups::{self, Groups};
use crate::metrics::Metrics;
use crate::plugin::{self, Distribution, PluginRegistry};
use crate::schedule::{Schedule, Turn};
use crate::store::{self, Store};
use crate::trace::Journal;
use crate::{cluster, nats, StartError};

/// The parts a broker is built on.
pub(crate) struct Backends {
    pub store: Arc<dyn Store>,
    pub groups: Arc<dyn Groups>,
    /// Delayed messages, and whether this node fires them.
    pub schedule: Arc<Schedule>,
    pub turn: Turn,
    pub plugins: Arc<PluginRegistry>,
    pub distribution: Arc<dyn Distribution>,
    /// Cluster mode: the task following the cluster's plugins (it ends
    /// with `shutdown`).
    pub follower: Option<tokio::task::JoinHandle<()>>,
    /// Cluster mode: request-reply through NATS.
    pub relay: Option<Arc<crate::reply::nats::NatsRelay>>,
}

/// Opens the backends `config` asks for; background work stops with
/// `shutdown`.
pub(crate) async fn open(
    config: &Config,
    metrics: Arc<Metrics>,
    record: Arc<Journal>,
    shutdown: &CancellationToken,
) -> Result<Backends, StartError> {
    match &config.cluster {
        Some(cluster) => open_cluster(config, cluster, record, shutdown).await,
        None => open_local(config, metrics, record).await,
    }
}

/// One machine: the data directory's topics and groups (recovered off the
/// async workers), the config file's plugins.
async fn open_local(
    config: &Config,
    metrics: Arc<Metrics>,
    record: Arc<Journal>,
) -> Result<Backends, StartError> {
    let options = store::LocalOptions::from_config(config);
    let schedule_options = store::LocalOptions {
        data_dir: options.data_dir.join("schedule"),
        ..options.clone()
    };
    let store: Arc<dyn Store> = Arc::new(
        store::LocalStore::open(options, metrics)
            .await
            .map_err(StartError::Store)?,
    );
    // Its own metrics: the schedule's log is not a topic of the users'.
    let schedule = Arc::new(
        store::LocalStore::open(schedule_options, Arc::new(Metrics::default()))
            .await
            .map_err(StartError::Store)?,
    );
    let schedule = Schedule::open(schedule, store::TopicSettings::defaults(config))
        .await
        .map_err(StartError::Store)?;
    let options = groups::GroupsOptions {
        record,
        ..groups::GroupsOptions::from_config(config)
    };
    let groups = groups::LocalGroups::open(store.clone(), options)
        .await
        .map_err(StartError::Groups)?;
    let plugins = load_plugins(config, None).await?;
    Ok(Backends {
        store,
        groups: Arc::new(groups),
        schedule,
        turn: Turn::always(),
        distribution: Arc::new(plugin::LocalDistribution::new(plugins.clone())),
        plugins,
        follower: None,
        relay: None,
    })
}

/// Cluster mode: topics, groups and plugins in the NATS JetStream cluster,
/// checked before the node serves.
async fn open_cluster(
    config: &Config,
    cluster: &ClusterConfig,
    record: Arc<Journal>,
    shutdown: &CancellationToken,
) -> Result<Backends, StartError> {
    let node = cluster
        .node
        .clone()
        .unwrap_or_else(|| format!("{}:{}", host_name(), config.server.listen.port()));
    let nats = nats::Nats::connect(cluster, node.clone())
        .await
        .map_err(StartError::Cluster)?;
    let defaults = store::TopicSettings::defaults(config);
    let store: Arc<dyn Store> = Arc::new(
        store::JetStreamStore::open(nats.clone(), defaults)
            .await
            .map_err(StartError::Store)?,
    );
    let schedule = Arc::new(
        store::JetStreamStore::open_in(nats.clone(), defaults, nats::names::SCHEDULE)
            .await
            .map_err(StartError::Store)?,
    );
    let schedule = Schedule::open(schedule, defaults)
        .await
        .map_err(StartError::Store)?;
    let lease = store::jetstream::open_bucket(&nats, crate::schedule::LEASE_BUCKET)
        .await
        .map_err(StartError::Store)?;
    let turn = Turn::lease(lease, node.clone());
    let groups = groups::JetStreamGroups::open(nats.clone(), store.clone(), record)
        .await
        .map_err(StartError::Groups)?;
    let (shared, effective) = cluster::SharedPlugins::open(&nats, config)
        .await
        .map_err(StartError::SharedPlugins)?;
    let state = store::jetstream::open_bucket(&nats, plugin::kv::cluster::STATE_BUCKET)
        .await
        .map_err(StartError::Store)?;
    let state = plugin::kv::cluster::ClusterOpener::new(state, cluster.request_timeout);
    let plugins = load_plugins(&effective, Some(Box::new(state))).await?;
    let relay = crate::reply::nats::NatsRelay::new(nats.client.clone());
    let (distribution, follower) =
        cluster::ClusterDistribution::start(nats, shared, plugins.clone(), shutdown.clone())
            .await
            .map_err(StartError::SharedPlugins)?;
    tracing::info!(%node, servers = ?cluster.nats, replicas = cluster.replicas, "cluster mode: topics, groups and plugins are kept in NATS JetStream");
    Ok(Backends {
        store,
        groups: Arc::new(groups),
        schedule,
        turn,
        plugins,
        distribution,
        follower: Some(follower),
        relay: Some(relay),
    })
}

/// Loads every configured plugin (compiling components off the async
/// workers), their state kept where `state` opens it (by default in the
/// data directory). A plugin that fails to load stops start-up with its
/// error.
async fn load_plugins(
    config: &Config,
    state: Option<Box<dyn plugin::kv::Opener>>,
) -> Result<Arc<PluginRegistry>, StartError> {
    let config = config.clone();
    let registry = tokio::task::spawn_blocking(move || match state {
        Some(state) => PluginRegistry::load_with_state(&config, state),
        None => PluginRegistry::load(&config),
    })
    .await
    .map_err(StartError::PluginTask)??;
    for pipeline in &registry.current().pipelines {
        tracing::info!(pipeline = %pipeline.describe(), on_error = ?pipeline.on_error, "pipeline ready");
    }
    Ok(Arc::new(registry))
}

/// This machine's name, for the default node name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sluice".to_owned())
}
