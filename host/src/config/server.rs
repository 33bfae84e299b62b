//! `[server]`, `[admin]` and `[limits]`: where the broker listens (QUIC for
//! clients, plain HTTP for metrics) and how much each client may use.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// QUIC listen address.
    pub listen: SocketAddr,
    /// Where topics, group state and the development certificate live.
    pub data_dir: PathBuf,
    /// PEM certificate chain. With `key`; without both, a self-signed
    /// certificate is created in `<data_dir>/tls/` at first start.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 4433)),
            data_dir: PathBuf::from("./sluice-data"),
            cert: None,
            key: None,
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Serve `/metrics` (Prometheus), `/healthz` and the console over
    /// plain HTTP.
    pub enabled: bool,
    /// Where (keep it on loopback or a private interface: `/metrics` and
    /// `/healthz` have no auth, and the console's cookies are not `Secure`).
    pub listen: SocketAddr,
    /// Serve the web console at `/`.
    pub console: bool,
    /// With `auth.mode = "none"`, serve the console to clients beyond this
    /// machine too. Off, it answers loopback clients only: without auth,
    /// whoever opens it has every right.
    pub console_allow_remote: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            console: true,
            console_allow_remote: false,
        }
    }
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest frame body accepted, in bytes.
    pub max_frame_bytes: u32,
    /// Concurrent client connections.
    pub max_connections: usize,
    /// Connections open at once per authenticated principal (a principal's
    /// own `max_connections` overrides it). Not applied with `auth.mode = "none"`.
    pub max_connections_per_principal: usize,
    /// Subscriptions per connection.
    pub max_subscriptions_per_connection: usize,
    /// Consumer-group members (`consume`) per connection.
    pub max_consumers_per_connection: usize,
    /// Messages in one publish request.
    pub max_batch_messages: usize,
    /// Requests (publishes included) being processed at once per
    /// connection; more wait unread (QUIC flow control then slows that
    /// client). Also accepted as `max_in_flight_publishes`.
    #[serde(alias = "max_in_flight_publishes")]
    pub max_in_flight_requests: usize,
    /// Messages waiting for a slow live subscriber before new ones are
    /// dropped for it (counted, reported to the subscriber).
    pub subscriber_buffer_messages: usize,
    /// Bytes (key, headers, id and payload, plus 64 per message) held in
    /// memory for one subscriber before new messages are dropped for it, as
    /// for `subscriber_buffer_messages`: a live subscriber is told how many
    /// it missed, a replaying one reads them back from the log.
    #[serde(deserialize_with = "above_zero")]
    pub subscriber_buffer_bytes: usize,
    /// Time allowed from connection to Hello.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// A connection with no traffic for this long is closed (clients send
    /// keep-alives, so only dead peers hit it).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_frame_bytes: sluice_proto::DEFAULT_MAX_FRAME_BYTES,
            max_connections: 10_000,
            max_connections_per_principal: 1_000,
            max_subscriptions_per_connection: 1_000,
            max_consumers_per_connection: 100,
            max_batch_messages: 10_000,
            max_in_flight_requests: 1_024,
            subscriber_buffer_messages: 10_000,
            subscriber_buffer_bytes: 64 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(15),
        }
    }
}

/// A size that must be above zero (zero would read as "unlimited").
fn above_zero<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    let value = usize::deserialize(deserializer)?;
    if value == 0 {
        return Err(serde::de::Error::custom(
            "must be above zero (a number of bytes)",
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::LimitsConfig;

    #[derive(serde::Deserialize)]
    struct File {
        limits: LimitsConfig,
    }

    #[test]
    fn subscriber_buffer_bytes_defaults_to_64_mib_and_refuses_zero() {
        let file: File = toml::from_str("[limits]\n").expect("valid");
        assert_eq!(file.limits.subscriber_buffer_bytes, 64 * 1024 * 1024);
        let file: File =
            toml::from_str("[limits]\nsubscriber_buffer_bytes = 1048576\n").expect("valid");
        assert_eq!(file.limits.subscriber_buffer_bytes, 1 << 20);
        let err = toml::from_str::<File>("[limits]\nsubscriber_buffer_bytes = 0\n")
            .err()
            .expect("zero is refused")
            .to_string();
        assert!(err.contains("subscriber_buffer_bytes"), "{err}");
        assert!(err.contains("above zero"), "{err}");
    }
}
