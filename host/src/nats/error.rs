//! [`NatsError`]: why a node cannot use its NATS JetStream cluster.

use std::path::PathBuf;

/// Why the node cannot start on, or use, its NATS cluster.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// No server of `cluster.nats` answered.
    #[error(
        "cannot connect to NATS at {urls}: {reason} (check cluster.nats and that the servers run)"
    )]
    Connect {
        /// The URLs tried.
        urls: String,
        /// What the client reported.
        reason: String,
    },
    /// `cluster.creds` could not be read.
    #[error("cannot read NATS credentials {path}: {source}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// JetStream does not answer for this account.
    #[error(
        "JetStream is not enabled on the NATS servers ({0}); start them with a `jetstream` block"
    )]
    JetStreamOff(String),
    /// Too few servers run JetStream for the replica count.
    #[error("cluster.replicas = {replicas} needs {replicas} JetStream servers, but {found} were found ({detail})")]
    TooFewServers {
        /// Replicas asked for.
        replicas: usize,
        /// Servers found.
        found: usize,
        /// Which were reached and which were not.
        detail: String,
    },
    /// A server acknowledges writes before they are on its disk.
    #[error("NATS server {server} does not fsync before acknowledging (jetstream sync_interval is not `always`): an acknowledged message could be lost in a power failure; set `sync_interval: always` in its jetstream block, or cluster.require_fsync = false to accept that")]
    NoFsync {
        /// The server's name.
        server: String,
    },
    /// A monitoring URL did not answer as a NATS monitoring endpoint.
    #[error("cannot read {url}: {reason} (check cluster.monitor)")]
    Monitor {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}
