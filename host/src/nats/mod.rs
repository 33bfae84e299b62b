//! The node's connection to the NATS JetStream cluster that holds
//! everything in cluster mode, and the checks made before a node serves.
//!
//! This module knows the configuration and nothing else of the broker: the
//! JetStream backends of the store and of the groups build on it.
//!
//! # Layout
//!
//! - [`Nats`] (here): the client, the JetStream context and the settings
//!   every backend uses (replicas, node name, timeouts).
//! - [`checks`]: what is refused at start (too few servers, JetStream off,
//!   no fsync before acknowledging).
//! - [`names`]: topic and group names mapped to stream, consumer and key
//!   names that NATS accepts.
//! - [`error`]: why the cluster cannot be used.

pub mod checks;
pub mod error;
pub mod names;

use std::time::Duration;

use async_nats::jetstream;

pub use error::NatsError;

use crate::config::ClusterConfig;

/// An open connection to the cluster, shared by the store and the groups.
#[derive(Clone)]
pub struct Nats {
    /// The core NATS client (requests, inboxes).
    pub client: async_nats::Client,
    /// JetStream on that client.
    pub jetstream: jetstream::Context,
    /// Copies of every stream, consumer and bucket.
    pub replicas: usize,
    /// This node's name.
    pub node: String,
    /// How long one request may take.
    pub request_timeout: Duration,
}

impl Nats {
    /// Connects to the servers of `config`, checks them (see [`checks`])
    /// and returns the connection. `node` names this node in the servers'
    /// connection lists and in sluice's own status.
    pub async fn connect(config: &ClusterConfig, node: String) -> Result<Nats, NatsError> {
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("sluice {node}"))
            .connection_timeout(config.request_timeout)
            .request_timeout(Some(config.request_timeout))
            // The ping interval stays at its default (a minute). A shorter
            // one moves the node off a hung or cut-off server sooner, but
            // publishes still in that server's buffers are then stored when
            // it comes back, after later ones sent through another server:
            // the fault tests measured keys out of order. A hung server
            // makes this node's publishes fail (clients send them again with
            // the same ids) rather than reorder them.
            // Reconnect for ever: a node whose NATS servers restart keeps
            // its clients and waits for them.
            .max_reconnects(None);
        if let Some(token) = &config.token {
            options = options.token(token.clone());
        }
        if let Some(creds) = &config.creds {
            options =
                options
                    .credentials_file(creds)
                    .await
                    .map_err(|source| NatsError::Credentials {
                        path: creds.clone(),
                        source,
                    })?;
        }
        if let Some(ca) = &config.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        let urls = config.nats.join(",");
        let servers = config
            .nats
            .iter()
            .map(|url| url.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| NatsError::Connect {
                urls: urls.clone(),
                reason: e.to_string(),
            })?;
        let client = options
            .connect(servers)
            .await
            .map_err(|e| NatsError::Connect {
                urls: urls.clone(),
                reason: e.to_string(),
            })?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(config.request_timeout);
        let nats = Nats {
            client,
            jetstream,
            replicas: config.replicas,
            node,
            request_timeout: config.request_timeout,
        };
        checks::before_serving(&nats, config).await?;
        Ok(nats)
    }
}

/// Whether a failed request may succeed when made again in a moment: no
/// server answered yet (a stream or bucket just created, whose responders
/// are still being announced across the cluster; a leader being elected),
/// it timed out, or the servers do not all see each other yet (a server
/// starting or rejoining: placement finds no peers).
pub fn is_transient(error: &dyn std::fmt::Display) -> bool {
    let text = error.to_string().to_ascii_lowercase();
    [
        "no responders",
        "timed out",
        "timeout",
        "peer offline",
        "no suitable peers",
        "leader not found",
        // A publish to a stream created a moment ago, before its subject's
        // interest reached this server.
        "no stream found",
    ]
    .iter()
    .any(|t| text.contains(t))
}

impl Nats {
    /// Runs `request` until it succeeds, fails for good, or fails only
    /// transiently ([`is_transient`]) for longer than three request
    /// timeouts (a server restarting, an election, a busy machine).
    pub async fn retrying<T, E, F, Fut>(&self, mut request: F) -> Result<T, E>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let deadline = tokio::time::Instant::now() + self.request_timeout * 3;
        let mut delay = Duration::from_millis(20);
        loop {
            match request().await {
                Err(e) if is_transient(&e) && tokio::time::Instant::now() + delay < deadline => {
                    tracing::debug!(error = %e, "a NATS request failed for now; trying again");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }
}
