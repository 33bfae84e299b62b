//! `sluice`: the message broker as a library, and the `sluice` command.
//!
//! [`start`] opens the data directory, recovers every topic and listens for
//! QUIC connections; [`run`] does the same and stops when a shutdown future
//! completes. The `sluice` binary and the end-to-end tests both use them.
//!
//! # Layout
//!
//! - [`config`] - `sluice.toml`.
//! - [`server`] - QUIC endpoint, TLS, one task per connection and per stream.
//! - [`broker`] - publish pipeline, routing, subscriptions, fetch, topic admin, groups.
//! - [`store`] - the [`store::Store`] trait and the local segmented log behind it.
//! - [`groups`] - the [`groups::Groups`] trait, its policy and the local groups.
//! - [`error`] - [`error::BrokerError`] and its wire codes.
//! - [`auth`] - principals, tokens, certificates and [`auth::authorize`].
//! - [`delivery`] - what a subscriber or group member gets at a time.
//! - [`dead_letter`] - dead-letter topics and headers.
//! - [`sync`] - lock helpers.
//! - [`trace`] - trace context, OpenTelemetry spans and the per-message
//!   event record behind `sluice trace`.
//! - [`plugin`] - the wasmtime host: plugins and pipelines.
//! - [`reply`] - request-reply: live responders and requests waiting for a reply.
//! - [`cluster`] - what cluster nodes share beyond storage: plugins.
//! - [`nats`] - cluster mode's connection to NATS JetStream and its checks.
//! - [`metrics`] - Prometheus metrics, served by the admin listener.
//! - [`console`] - the web console, served by the admin listener.
//! - [`cli`] - the subcommands of the `sluice` binary.
//!
//! A published message goes one way: server connection task → broker
//! publish → store append → committer (group commit) → ack, then fan-out
//! to subscriptions → server delivery streams. Nothing below calls up.

pub mod auth;
mod backends;
pub mod broker;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod console;
pub mod dead_letter;
pub mod delivery;
pub mod disk;
pub mod error;
pub mod groups;
pub mod metrics;
pub mod nats;
pub mod plugin;
pub mod reply;
pub mod schedule;
pub mod server;
pub mod store;
pub mod sync;
pub mod trace;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinError;
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// How long shutdown waits for connections to drain before closing them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a broker could not start.
///
/// A variant's cause is its source, not part of its message: `sluice serve`
/// and the tests print the whole chain.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is not valid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Telemetry could not start.
    #[error(transparent)]
    Telemetry(#[from] trace::TelemetryError),
    /// The data directory could not be created.
    #[error("failed to create data directory {path}")]
    CreateDataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The data directory's lock file could not be opened.
    #[error("failed to open {path}")]
    OpenLock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The data directory's lock file could not be locked.
    #[error("failed to lock {path}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another broker holds the data directory.
    #[error(
        "data directory {0} is in use by another sluice broker (stop it or choose another --data)"
    )]
    DataDirInUse(PathBuf),
    /// The TLS certificate or the QUIC configuration is not usable.
    #[error(transparent)]
    Tls(#[from] server::tls::TlsError),
    /// `auth.client_ca` is not usable.
    #[error(transparent)]
    ClientCa(#[from] auth::ClientCaError),
    /// A configured plugin does not load.
    #[error(transparent)]
    Plugin(#[from] plugin::PluginError),
    /// The task that loads the plugins panicked.
    #[error("plugin loading task failed")]
    PluginTask(#[source] JoinError),
    /// The topics in the data directory could not be recovered.
    #[error("failed to open the topics")]
    Store(#[source] store::StoreError),
    /// Cluster mode: the cluster's plugins cannot be read or loaded.
    #[error("cannot load the cluster's plugins")]
    SharedPlugins(#[source] cluster::SharedPluginsError),
    /// Cluster mode: the NATS JetStream cluster is not usable.
    #[error("cannot start in cluster mode")]
    Cluster(#[source] nats::NatsError),
    /// The consumer groups in the data directory could not be recovered.
    #[error("failed to recover the consumer groups")]
    Groups(#[source] error::BrokerError),
    /// The QUIC endpoint could not bind its address.
    #[error("failed to listen on {addr}")]
    Listen {
        /// `server.listen`.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The address the QUIC endpoint bound could not be read.
    #[error("failed to read the bound address")]
    LocalAddr(#[source] std::io::Error),
    /// The admin listener could not bind its address.
    #[error("failed to listen on {addr} for the admin endpoints (/metrics, /healthz); set [admin] listen or enabled = false")]
    AdminListen {
        /// `admin.listen`.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The address the admin listener bound could not be read.
    #[error("failed to read the admin address")]
    AdminAddr(#[source] std::io::Error),
}

/// Why a broker did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    /// The broker's task panicked before its shutdown finished.
    #[error("broker task failed")]
    Task(#[source] JoinError),
}

/// Why [`run`] failed: the broker did not start, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Start-up failed; nothing is running.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The broker ran, but its shutdown failed.
    #[error(transparent)]
    Stop(#[from] StopError),
}

/// A broker that is running.
pub struct Running {
    addr: SocketAddr,
    cert_path: PathBuf,
    fingerprint: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    plugins: std::sync::Arc<plugin::PluginRegistry>,
    admin_addr: Option<SocketAddr>,
}

impl Running {
    /// The QUIC address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The certificate clients should trust.
    pub fn cert_path(&self) -> &std::path::Path {
        &self.cert_path
    }

    /// SHA-256 fingerprint of the certificate.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The admin (HTTP: `/metrics`, `/healthz`) address actually bound, if
    /// the admin listener is enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The plugins and pipelines in force (and the last refused config).
    pub fn plugins(&self) -> &std::sync::Arc<plugin::PluginRegistry> {
        &self.plugins
    }

    /// Starts a graceful shutdown without waiting for it.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Shuts down gracefully: stops accepting, answers the requests already
    /// read (publishes are stored and acked), closes connections with a
    /// reason, commits and fsyncs every log.
    pub async fn stop(self) -> Result<(), StopError> {
        self.shutdown.cancel();
        self.task.await.map_err(StopError::Task)
    }
}

/// Locks the data directory so that two brokers never share it.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    std::fs::create_dir_all(dir).map_err(|source| StartError::CreateDataDir {
        path: dir.to_owned(),
        source,
    })?;
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StartError::OpenLock {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError::DataDirInUse(dir.to_owned())),
        Err(std::fs::TryLockError::Error(source)) => Err(StartError::Lock { path, source }),
    }
}

/// Starts a broker: locks and recovers the data directory, loads or
/// creates the TLS certificate, binds the QUIC endpoint.
pub async fn start(config: Config) -> Result<Running, StartError> {
    config.validate()?;
    let lock = lock_data_dir(&config.server.data_dir)?;
    let identity = server::tls::load_or_create(&config.server)?;
    let auth = std::sync::Arc::new(auth::Auth::new(
        &config.auth,
        config.base_dir.as_deref(),
        config.limits.max_connections_per_principal,
    )?);
    let quic = server::tls::quic_config(&identity, &config.limits, auth.tls_client_verifier())?;
    let metrics = std::sync::Arc::new(metrics::Metrics::default());
    let shutdown = CancellationToken::new();
    let observer = std::sync::Arc::new(trace::Observer::start(&config.telemetry)?);
    let backends =
        backends::open(&config, metrics.clone(), observer.record.clone(), &shutdown).await?;
    let plugins = backends.plugins.clone();
    let firing = backends.schedule.start(
        backends.store.clone(),
        config.topics.auto_create,
        backends.turn,
        shutdown.clone(),
    );
    let broker = broker::Broker::new(
        config.clone(),
        broker::Backing {
            store: backends.store,
            groups: backends.groups,
            schedule: backends.schedule,
        },
        plugins.clone(),
        backends.distribution,
        metrics,
        observer,
    );
    if let Some(relay) = backends.relay {
        broker.relay_requests(relay);
    }
    let endpoint =
        sluice_client::transport::endpoint(config.server.listen, Some(quic)).map_err(|source| {
            StartError::Listen {
                addr: config.server.listen,
                source,
            }
        })?;
    let addr = endpoint.local_addr().map_err(StartError::LocalAddr)?;
    if identity.self_signed {
        tracing::info!(fingerprint = %identity.fingerprint, cert = %identity.cert_path.display(), "using the self-signed development certificate; clients on this machine can trust it with --data or --ca");
    } else {
        tracing::info!(fingerprint = %identity.fingerprint, cert = %identity.cert_path.display(), "using the configured certificate");
    }
    let admin = if config.admin.enabled {
        let listener = tokio::net::TcpListener::bind(config.admin.listen)
            .await
            .map_err(|source| StartError::AdminListen {
                addr: config.admin.listen,
                source,
            })?;
        let admin_addr = listener.local_addr().map_err(StartError::AdminAddr)?;
        if config.admin.console {
            tracing::info!(%admin_addr, "console at http://{admin_addr}/, metrics at /metrics, health at /healthz");
        } else {
            tracing::info!(%admin_addr, "metrics at http://{admin_addr}/metrics, health at /healthz");
        }
        Some((listener, admin_addr))
    } else {
        None
    };
    let admin_addr = admin.as_ref().map(|(_, a)| *a);
    tracing::info!(%addr, data_dir = %config.server.data_dir.display(), fsync = ?config.storage.fsync, "sluice is listening");
    if auth.required() {
        tracing::info!(
            principals = config.auth.principals.len(),
            client_ca = config.auth.client_ca.is_some(),
            "clients must authenticate"
        );
    } else if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "auth.mode = \"none\" while listening beyond loopback: any client that reaches this address may publish, subscribe and administer; configure [auth] (see SECURITY.md)");
    } else {
        tracing::info!("auth.mode = \"none\": development mode, every client has every right");
    }

    let watcher = if let Some(follower) = backends.follower {
        // The cluster's plugins: reloaded from the cluster, not from files.
        Some(follower)
    } else if config.plugin_runtime.watch {
        match plugin::watch::spawn(
            broker.plugins().clone(),
            config.plugin_runtime.debounce,
            shutdown.clone(),
        ) {
            Ok(task) => Some(task),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch plugin and config files; changes take effect after a restart");
                None
            }
        }
    } else {
        None
    };
    let admin_task = admin.map(|(listener, _)| {
        let console = config.admin.console.then(|| {
            console::Console::start(
                broker.clone(),
                auth.clone(),
                config.admin.console_allow_remote,
                shutdown.clone(),
            )
        });
        tokio::spawn(server::admin::serve(
            listener,
            broker.clone(),
            console,
            shutdown.clone(),
        ))
    });
    let log_writer = tokio::spawn(plugin::logs::write_logs(
        plugins.logs().clone(),
        broker.store().clone(),
        shutdown.clone(),
    ));
    let shared = server::shared(config, broker.clone(), auth, shutdown.clone());
    let stopping = shutdown.clone();
    let task = tokio::spawn(async move {
        let serve = server::serve(endpoint.clone(), shared);
        tokio::pin!(serve);
        tokio::select! {
            () = &mut serve => {}
            () = stopping.cancelled() => {
                // Only the drain is timed, not the broker's life.
                if tokio::time::timeout(DRAIN_TIMEOUT, &mut serve).await.is_err() {
                    tracing::warn!("connections did not drain in time; closing them");
                }
            }
        }
        endpoint.close(
            u32::from(sluice_proto::ErrorCode::ShuttingDown.as_u16()).into(),
            b"broker is shutting down",
        );
        let _ = log_writer.await;
        let _ = firing.await;
        broker.shutdown().await;
        if let Some(watcher) = watcher {
            let _ = watcher.await;
        }
        if let Some(admin) = admin_task {
            let _ = admin.await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
        drop(lock);
        tracing::info!("sluice stopped");
    });
    Ok(Running {
        addr,
        cert_path: identity.cert_path,
        fingerprint: identity.fingerprint,
        shutdown,
        task,
        plugins,
        admin_addr,
    })
}

/// Runs a broker until `shutdown` completes, then stops it gracefully.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let running = start(config).await?;
    shutdown.await;
    tracing::info!("shutting down");
    Ok(running.stop().await?)
}
