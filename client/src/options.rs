//! How to reach and trust a broker.

use std::path::PathBuf;
use std::time::Duration;

/// How the client checks the broker's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Trust certificates issued by the CA (or the self-signed certificate)
    /// in this PEM file. For a development broker this is
    /// `<data dir>/tls/cert.pem`.
    CaFile(PathBuf),
    /// The same, from PEM bytes.
    CaPem(Vec<u8>),
    /// Accept any certificate. The connection is still encrypted but anyone
    /// on the path can impersonate the broker: development only.
    Insecure,
}

/// Everything [`crate::Client::connect`] needs.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `host:port` of the broker.
    pub server: String,
    /// The name to check the certificate against; defaults to the host part
    /// of `server`.
    pub server_name: Option<String>,
    /// How to check the broker's certificate. Required.
    pub trust: Option<Trust>,
    /// Bearer token sent in Hello.
    pub token: Option<String>,
    /// A name for the broker's logs.
    pub client_name: String,
    /// Give up connecting after this long.
    pub connect_timeout: Duration,
    /// Largest frame this client reads (deliveries); the broker's own limit
    /// for what it accepts comes back in Welcome.
    pub max_frame_bytes: u32,
}

impl ClientOptions {
    /// Options for the broker at `server` (`host:port`).
    pub fn new(server: impl Into<String>) -> Self {
        ClientOptions {
            server: server.into(),
            server_name: None,
            trust: None,
            token: None,
            client_name: format!("sluice-client/{}", env!("CARGO_PKG_VERSION")),
            connect_timeout: Duration::from_secs(10),
            max_frame_bytes: 16 * 1024 * 1024,
        }
    }

    /// Sets how the certificate is checked.
    pub fn trust(mut self, trust: Trust) -> Self {
        self.trust = Some(trust);
        self
    }

    /// Sets the token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets the client name.
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = name.into();
        self
    }

    /// Sets the name checked against the certificate.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }
}
