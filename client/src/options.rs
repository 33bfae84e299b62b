//! How to reach and trust a broker: [`ClientOptions`] (where the broker
//! or the nodes of a cluster are, timeouts, failover) and [`Trust`] (how
//! its certificate is checked).

use std::path::PathBuf;
use std::time::Duration;

use crate::error::ClientError;

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
///
/// One broker or several: `server` is `host:port`, or the nodes of a
/// cluster separated by commas (`"a:4433,b:4433"`). The client connects to
/// the first that answers, in order. When the connection is lost (the node
/// stops, dies or becomes unreachable) it reconnects, to the next address
/// first (round robin), for up to `reconnect_timeout`: requests wait
/// meanwhile, publishes left unanswered are sent again with their message
/// ids (stored once), subscriptions resume after the last message they
/// delivered, and consumers rejoin their groups.
///
/// ```
/// use std::time::Duration;
/// use sluice_client::ClientOptions;
///
/// let options = ClientOptions::new("node-a:4433,node-b:4433")
///     .reconnect_timeout(Duration::from_secs(30));
/// assert_eq!(options.servers()?, ["node-a:4433", "node-b:4433"]);
/// # Ok::<(), sluice_client::ClientError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The broker's `host:port`, or several separated by commas (the nodes
    /// of a cluster, tried in turn).
    pub server: String,
    /// The name to check the certificate against; defaults to the host part
    /// of each address.
    pub server_name: Option<String>,
    /// How to check the broker's certificate. Required.
    pub trust: Option<Trust>,
    /// Bearer token sent in Hello.
    pub token: Option<String>,
    /// Client certificate presented in the TLS handshake (mutual TLS).
    pub identity: Option<ClientIdentity>,
    /// A name for the broker's logs.
    pub client_name: String,
    /// Give up one attempt to connect to one address after this long.
    pub connect_timeout: Duration,
    /// After losing its connection, how long the client keeps trying to
    /// reconnect before every waiting operation fails with
    /// [`ClientError::Unreachable`]. Zero: do not reconnect. Keep it below
    /// the broker's `storage.dedup_window` (2 minutes by default) so that a
    /// publish sent again is still recognised by its id.
    pub reconnect_timeout: Duration,
    /// A connection that hears nothing from the broker for this long is
    /// taken as lost. The client sends keep-alives at a third of it, so a
    /// quiet but live broker is not; the broker's `limits.idle_timeout`
    /// applies when it is shorter.
    pub idle_timeout: Duration,
    /// Largest frame this client reads (deliveries); the broker's own limit
    /// for what it accepts comes back in Welcome.
    pub max_frame_bytes: u32,
}

impl ClientOptions {
    /// Options for the broker at `server`: `host:port`, or several
    /// addresses separated by commas. The addresses are checked by
    /// [`servers`](ClientOptions::servers) when the client connects.
    pub fn new(server: impl Into<String>) -> Self {
        ClientOptions {
            server: server.into(),
            server_name: None,
            trust: None,
            token: None,
            identity: None,
            client_name: format!("sluice-client/{}", env!("CARGO_PKG_VERSION")),
            connect_timeout: Duration::from_secs(10),
            reconnect_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(10),
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

    /// Sets how long the client tries to reconnect after a lost connection
    /// (zero: never).
    pub fn reconnect_timeout(mut self, timeout: Duration) -> Self {
        self.reconnect_timeout = timeout;
        self
    }

    /// Sets after how long without a word from the broker a connection is
    /// taken as lost.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The addresses in `server`, in order: each `host:port` (an IPv6
    /// address in brackets, `[::1]:4433`), separated by commas, spaces
    /// around them ignored. Names are resolved at each connection attempt,
    /// so a node that moves is found again.
    pub fn servers(&self) -> Result<Vec<String>, ClientError> {
        let list = self.server.trim();
        if list.is_empty() {
            return Err(ClientError::Config(
                "no broker address given: expected host:port, or several separated by commas"
                    .into(),
            ));
        }
        list.split(',')
            .map(|address| check_address(address.trim(), list))
            .collect()
    }
}

/// `address` if it is `host:port`; else why not, naming the whole `list`.
fn check_address(address: &str, list: &str) -> Result<String, ClientError> {
    let bad = |why: &str| {
        ClientError::Config(format!(
            "bad broker address {address:?} in {list:?}: {why} (expected host:port, several separated by commas)"
        ))
    };
    if address.is_empty() {
        return Err(bad("empty"));
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(bad("no port"));
    };
    match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err(bad("the port is not a number from 1 to 65535")),
        Ok(_) => {}
    }
    let bare = match host.strip_prefix('[') {
        Some(inner) => inner
            .strip_suffix(']')
            .ok_or_else(|| bad("an IPv6 address needs its closing bracket"))?,
        None if host.contains(':') => return Err(bad("write an IPv6 address in brackets")),
        None => host,
    };
    if bare.is_empty() || bare.contains(char::is_whitespace) {
        return Err(bad("no host name"));
    }
    Ok(address.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(list: &str) -> Result<Vec<String>, String> {
        ClientOptions::new(list)
            .servers()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn one_address_or_several_in_order() {
        assert_eq!(servers("127.0.0.1:4433").unwrap(), ["127.0.0.1:4433"]);
        assert_eq!(
            servers(" a.example:4433, b.example:4434 ,[::1]:5 ").unwrap(),
            ["a.example:4433", "b.example:4434", "[::1]:5"]
        );
    }

    #[test]
    fn an_empty_list_is_refused_clearly() {
        for list in ["", "   "] {
            let err = servers(list).unwrap_err();
            assert!(err.contains("no broker address given"), "{list:?}: {err}");
        }
    }

    #[test]
    fn bad_addresses_are_refused_naming_the_address() {
        for (list, bad, why) in [
            ("a:1,,b:2", "\"\"", "empty"),
            ("a:1,", "\"\"", "empty"),
            ("broker", "\"broker\"", "no port"),
            ("broker:http", "\"broker:http\"", "not a number"),
            ("broker:0", "\"broker:0\"", "not a number"),
            ("broker:70000", "\"broker:70000\"", "not a number"),
            (":4433", "\":4433\"", "no host"),
            ("[]:4433", "\"[]:4433\"", "no host"),
            ("::1:4433", "\"::1:4433\"", "brackets"),
            ("[::1:4433", "\"[::1:4433\"", "closing bracket"),
            ("a:1,b c:2", "\"b c:2\"", "no host"),
        ] {
            let err = servers(list).unwrap_err();
            assert!(
                err.contains(&format!("bad broker address {bad}")) && err.contains(why),
                "{list:?}: {err}"
            );
            assert!(err.contains("expected host:port"), "{list:?}: {err}");
        }
    }

    #[tokio::test]
    async fn connecting_with_a_bad_list_fails_clearly_before_dialing() {
        for list in ["", "a:1,,b:2", "no-port"] {
            let options = ClientOptions::new(list).trust(Trust::Insecure);
            match crate::Client::connect(options).await {
                Err(ClientError::Config(message)) => {
                    assert!(
                        message.contains("expected host:port"),
                        "{list:?}: {message}"
                    )
                }
                other => panic!("{list:?}: expected a configuration error, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_zero_idle_timeout_is_refused() {
        let options = ClientOptions::new("127.0.0.1:1")
            .trust(Trust::Insecure)
            .idle_timeout(Duration::ZERO);
        match crate::Client::connect(options).await {
            Err(ClientError::Config(message)) => {
                assert!(message.contains("idle_timeout"), "{message}")
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_reconnect_for_a_minute_and_notice_silence_within_seconds() {
        let options = ClientOptions::new("a:1");
        assert_eq!(options.reconnect_timeout, Duration::from_secs(60));
        assert_eq!(options.idle_timeout, Duration::from_secs(10));
        let options = options
            .reconnect_timeout(Duration::ZERO)
            .idle_timeout(Duration::from_secs(3));
        assert_eq!(options.reconnect_timeout, Duration::ZERO);
        assert_eq!(options.idle_timeout, Duration::from_secs(3));
    }
}
