//! The QUIC side of the broker: the endpoint, one task per connection, one
//! task per subscription stream.
//!
//! # Layout
//!
//! - [`tls`] - the certificate (configured or self-signed) and QUIC settings.
//! - [`connection`] - the handshake and admission of one connection.
//! - [`session`] - a connection's requests and streams after its handshake.
//! - [`delivery`] - one subscription's delivery stream.
//! - [`admin`] - the admin HTTP listener (`/metrics`, `/healthz`).

pub mod admin;
mod connection;
mod delivery;
mod session;
pub mod tls;

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::config::Config;

/// Slack over `limits.max_frame_bytes` for frames the broker sends: a
/// message accepted in a publish frame gains fields (offset, timestamp)
/// when delivered or fetched and must still fit.
pub(crate) const OUTGOING_SLACK_BYTES: u32 = 64 * 1024;

/// What every connection task shares.
pub(crate) struct Shared {
    pub config: Config,
    pub broker: Broker,
    /// Cancelled when the broker starts shutting down.
    pub shutdown: CancellationToken,
    pub connection_slots: Arc<Semaphore>,
    /// Who clients are and what they may do.
    pub auth: Arc<crate::auth::Auth>,
}

/// Accepts connections until `shutdown`, then waits for every connection
/// to finish its in-flight requests and close.
pub(crate) async fn serve(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    let connections = TaskTracker::new();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => {
                    connections.spawn(connection::handle(incoming, shared.clone()));
                }
                None => break,
            },
            () = shared.shutdown.cancelled() => break,
        }
    }
    tracing::info!(
        connections = connections.len(),
        "no longer accepting connections; draining"
    );
    connections.close();
    connections.wait().await;
}

/// Builds the shared state.
pub(crate) fn shared(
    config: Config,
    broker: Broker,
    auth: Arc<crate::auth::Auth>,
    shutdown: CancellationToken,
) -> Arc<Shared> {
    let slots = Arc::new(Semaphore::new(config.limits.max_connections));
    Arc::new(Shared {
        config,
        broker,
        shutdown,
        connection_slots: slots,
        auth,
    })
}
