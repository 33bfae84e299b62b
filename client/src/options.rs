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

/// A client certificate and its key (PEM), for brokers that authenticate
/// clients by certificate (mutual TLS). The certificate's subject common
/// name is the principal the broker knows the client as.
#[derive(Clone)]
pub struct ClientIdentity {
    /// The certificate chain, leaf first.
    pub cert_pem: Vec<u8>,
    /// The leaf's private key.
    pub key_pem: Vec<u8>,
}

impl ClientIdentity {
    /// Reads the certificate chain and key from PEM files.
    pub fn from_files(
        cert: impl AsRef<std::path::Path>,
        key: impl AsRef<std::path::Path>,
    ) -> Result<ClientIdentity, crate::ClientError> {
        let read = |path: &std::path::Path, what: &str| {
            std::fs::read(path).map_err(|e| {
                crate::ClientError::Config(format!(
                    "cannot read client {what} {}: {e}",
                    path.display()
                ))
            })
        };
        Ok(ClientIdentity {
            cert_pem: read(cert.as_ref(), "certificate")?,
            key_pem: read(key.as_ref(), "key")?,
        })
    }
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("ClientIdentity")
            .field("cert_pem_bytes", &self.cert_pem.len())
            .finish_non_exhaustive()
    }
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
    /// Client certificate presented in the TLS handshake (mutual TLS).
    pub identity: Option<ClientIdentity>,
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
            identity: None,
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

    /// Presents a client certificate (mutual TLS).
    pub fn identity(mut self, identity: ClientIdentity) -> Self {
        self.identity = Some(identity);
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
