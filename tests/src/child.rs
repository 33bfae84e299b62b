//! [`ChildBroker`]: the `sluice-under-test` binary run as a child process
//! (`serve --config`), for the tests that SIGKILL a broker; killed when
//! dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use sluice_client::Client;

use crate::broker::client_options;

/// How long a child broker may take to accept its first client.
const START_LIMIT: Duration = Duration::from_secs(30);

/// Pause between two connection attempts while a child starts: each attempt
/// is itself the probe (a real client handshake), so this only keeps the
/// probing from crowding out the child's start-up on a small machine.
const START_PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// Lines of a child's output shown when it fails to start.
const LOG_TAIL_LINES: usize = 80;

/// Picks a free UDP port on loopback (bind to port 0, read it, release it).
pub fn free_udp_port() -> anyhow::Result<u16> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    Ok(socket.local_addr()?.port())
}

/// The `sluice-under-test` binary run as a child process: `serve --config`.
/// Killed (SIGKILL) when dropped.
pub struct ChildBroker {
    binary: PathBuf,
    config_path: PathBuf,
    data_dir: PathBuf,
    addr: SocketAddr,
    log_path: PathBuf,
    child: Option<std::process::Child>,
    starts: u32,
}

impl ChildBroker {
    /// Writes `<dir>/sluice.toml` (listen on a free loopback port, data in
    /// `<dir>/data`, `extra_toml` appended) and starts `binary serve --config`
    /// on it, waiting (bounded) until it accepts clients.
    pub async fn start(binary: &Path, dir: &Path, extra_toml: &str) -> anyhow::Result<ChildBroker> {
        let port = free_udp_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let data_dir = dir.join("data");
        let config_path = dir.join("sluice.toml");
        let toml = format!(
            "[server]\nlisten = \"{addr}\"\ndata_dir = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n{extra_toml}\n",
            data_dir.display()
        );
        std::fs::write(&config_path, toml)?;
        let mut broker = ChildBroker {
            binary: binary.to_path_buf(),
            config_path,
            data_dir,
            addr,
            log_path: dir.join("broker.log"),
            child: None,
            starts: 0,
        };
        broker.spawn().await?;
        Ok(broker)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let child = std::process::Command::new(&self.binary)
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("running {}", self.binary.display()))?;
        self.child = Some(child);
        // Wait until it accepts a real client, or exits.
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                anyhow::bail!(
                    "{} exited with {status} before accepting clients; the end of its output:\n{}",
                    self.binary.display(),
                    self.log_tail()
                );
            }
            match self.client().await {
                Ok(client) => {
                    client.close().await;
                    return Ok(());
                }
                Err(e) if Instant::now() >= deadline => {
                    anyhow::bail!(
                        "the child broker did not accept clients within {START_LIMIT:?}: {e}; the end of its output:\n{}",
                        self.log_tail()
                    )
                }
                Err(_) => tokio::time::sleep(START_PROBE_INTERVAL).await,
            }
        }
    }

    /// What the child printed so far (all runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last [`LOG_TAIL_LINES`] lines of [`log`](Self::log): enough to
    /// see why the last run failed, after many runs.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The broker's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A connected client (one attempt, short timeout).
    pub async fn client(&self) -> anyhow::Result<Client> {
        let cert = self.data_dir.join("tls").join("cert.pem");
        let mut options = client_options(self.addr, &cert);
        options.connect_timeout = Duration::from_secs(2);
        let client = tokio::time::timeout(Duration::from_secs(3), Client::connect(options))
            .await
            .context("connect timed out")??;
        Ok(client)
    }

    /// The running child's resident memory (`VmRSS`), in bytes.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        let pid = self
            .child
            .as_ref()
            .context("the child is not running")?
            .id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .context("no VmRSS in /proc/<pid>/status")?;
        Ok(kib * 1024)
    }

    /// SIGKILLs the child and reaps it.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the child again on the same configuration and data.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.spawn().await
    }
}

impl Drop for ChildBroker {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
