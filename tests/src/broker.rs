//! [`TestBroker`]: a real broker (`sluice::start`) in this process on
//! `127.0.0.1:0` with a temporary data directory, that can be stopped and
//! restarted on the same data, and hands out real clients that trust its
//! self-signed certificate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_client::{Client, ClientOptions, Trust};

use crate::wait::{bounded, bounded_for};

/// How long a client may take to connect to a test broker.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a graceful stop may take.
const STOP_LIMIT: Duration = Duration::from_secs(20);

/// How long a test's client tries to reconnect after losing its broker.
/// Short: a test that stops a broker and expects its clients to say so
/// must see the error within its bounds (a restarted test broker listens
/// on a new port anyway). Failover tests set their own.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Client options for a broker at `addr` whose certificate is `cert`.
pub fn client_options(addr: SocketAddr, cert: &Path) -> ClientOptions {
    let mut options = ClientOptions::new(addr.to_string())
        .trust(Trust::CaFile(cert.to_path_buf()))
        .client_name("sluice-e2e")
        .reconnect_timeout(RECONNECT_TIMEOUT);
    options.connect_timeout = CONNECT_TIMEOUT;
    options
}

/// A broker running in this process on a temporary data directory.
pub struct TestBroker {
    config: sluice::Config,
    // Dropped last: the broker must not outlive its directory.
    running: Option<sluice::Running>,
    addr: SocketAddr,
    cert: PathBuf,
    dir: tempfile::TempDir,
}

impl TestBroker {
    /// A broker with the default configuration.
    pub async fn start() -> anyhow::Result<TestBroker> {
        Self::start_with(|_| {}).await
    }

    /// A broker whose configuration `configure` adjusts after the harness set
    /// the listen address (`127.0.0.1:0`) and the data directory.
    pub async fn start_with(
        configure: impl FnOnce(&mut sluice::Config),
    ) -> anyhow::Result<TestBroker> {
        crate::init_tracing();
        let dir = tempfile::Builder::new().prefix("sluice-e2e-").tempdir()?;
        let mut config = sluice::Config::default();
        config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.server.data_dir = dir.path().join("data");
        config.admin.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        configure(&mut config);
        let running = sluice::start(config.clone())
            .await
            .context("starting the broker")?;
        Ok(TestBroker {
            addr: running.local_addr(),
            cert: running.cert_path().to_path_buf(),
            running: Some(running),
            config,
            dir,
        })
    }

    /// A broker started from a config file, as `sluice serve --config`
    /// does (so the file is watched), on `127.0.0.1:0` and a temporary
    /// data directory.
    pub async fn start_from_file(path: &Path) -> anyhow::Result<TestBroker> {
        let file = sluice::Config::load(path).context("loading the test config file")?;
        Self::start_with(move |c| {
            let (listen, data, admin) =
                (c.server.listen, c.server.data_dir.clone(), c.admin.listen);
            *c = file;
            c.server.listen = listen;
            c.server.data_dir = data;
            c.admin.listen = admin;
        })
        .await
    }

    /// The admin listener's address (`/metrics`, `/healthz`).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.running.as_ref().and_then(|r| r.admin_addr())
    }

    /// The plugins and pipelines in force in the running broker.
    pub fn plugins(&self) -> Option<&Arc<sluice::plugin::PluginRegistry>> {
        self.running.as_ref().map(|r| r.plugins())
    }

    /// The QUIC address of the running broker (changes across restarts).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The broker's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.config.server.data_dir
    }

    /// A scratch directory beside the data directory, removed with the broker.
    pub fn scratch_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The certificate clients trust.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// The configuration in force.
    pub fn config(&self) -> &sluice::Config {
        &self.config
    }

    /// A connected client.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let options = client_options(self.addr, &self.cert);
        let client = bounded("a client connection", Client::connect(options))
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        Ok(client)
    }

    /// Stops the broker gracefully (bounded).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(running) = self.running.take() {
            bounded_for("the broker to stop", STOP_LIMIT, running.stop()).await?;
        }
        Ok(())
    }

    /// Starts the broker again on the same data directory and configuration
    /// (after stopping it if it is running).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        let running = sluice::start(self.config.clone())
            .await
            .context("restarting the broker")?;
        self.addr = running.local_addr();
        self.cert = running.cert_path().to_path_buf();
        self.running = Some(running);
        Ok(())
    }

    /// The log file of a topic's segment starting at `base`.
    pub fn segment_path(&self, topic: &str, base: u64) -> PathBuf {
        self.data_dir()
            .join("topics")
            .join(topic)
            .join(format!("{base:020}.log"))
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.begin_shutdown();
        }
    }
}
