//! The brokers a comparison runs, one at a time, each its own process on
//! loopback in the run's temporary directory: `nats-server` with
//! JetStream in a [`NatsMode`], and `sluice serve` under an fsync policy.
//! Each is killed when dropped.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long a broker may take to start listening.
const READY_LIMIT: Duration = Duration::from_secs(30);

/// How long a broker sits idle, once listening, before its resident
/// memory is read: start-up allocations settle.
const IDLE_SETTLE: Duration = Duration::from_secs(1);

/// A broker process and its directory: killed, reaped and removed when
/// dropped (a run writes gigabytes).
struct Running {
    child: Child,
    dir: PathBuf,
}

impl Running {
    /// Its resident memory (KiB) after sitting idle for a moment.
    fn idle_rss_kib(&self) -> Option<u64> {
        std::thread::sleep(IDLE_SETTLE);
        rss_kib(self.child.id())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_tcp_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn free_udp_port() -> anyhow::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_LIMIT;
    while !ready() {
        if Instant::now() > deadline {
            bail!("{what} did not become ready within {READY_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A process's resident memory (KiB), from `/proc`.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// How a nats-server runs. Every mode has JetStream on, in its own store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatsMode {
    /// Plaintext client port, JetStream's default sync (it acks before
    /// it fsyncs, and syncs every 2 minutes).
    Default,
    /// TLS on the client port (required), JetStream's default sync.
    Tls,
    /// Plaintext, JetStream with `sync_interval: always`: an fsync per
    /// write before the ack.
    SyncAlways,
}

impl NatsMode {
    /// A name for directories and progress lines.
    pub fn name(self) -> &'static str {
        match self {
            NatsMode::Default => "default",
            NatsMode::Tls => "tls",
            NatsMode::SyncAlways => "sync-always",
        }
    }
}

/// The certificate and key a TLS nats-server presents, and the CA that
/// signed them (which the harness trusts).
pub struct NatsTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A running nats-server.
pub struct NatsServer {
    process: Running,
    /// `127.0.0.1:PORT`, for the harness.
    pub url: String,
}

impl NatsServer {
    /// Starts `binary` in `mode` with its config and store under `dir`;
    /// `tls` is needed for [`NatsMode::Tls`].
    pub fn start(
        binary: &Path,
        dir: &Path,
        mode: NatsMode,
        tls: Option<&NatsTls>,
    ) -> anyhow::Result<NatsServer> {
        let port = free_tcp_port()?;
        let dir = dir.join(format!("nats-{}", mode.name()));
        std::fs::create_dir_all(&dir)?;
        let store = dir.join("jetstream").display().to_string();
        let sync = match mode {
            NatsMode::SyncAlways => "  sync_interval: always\n",
            NatsMode::Default | NatsMode::Tls => "",
        };
        let mut config =
            format!("listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: {store:?}\n{sync}}}\n");
        if mode == NatsMode::Tls {
            let tls = tls.context("a TLS nats-server needs a certificate")?;
            config.push_str(&format!(
                "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n}}\n",
                tls.cert.display().to_string(),
                tls.key.display().to_string()
            ));
        }
        let config_path = dir.join("nats.conf");
        std::fs::write(&config_path, config)
            .with_context(|| format!("failed to write {}", config_path.display()))?;
        let log = std::fs::File::create(dir.join("nats.log"))?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("failed to start nats-server")?;
        let process = Running { child, dir };
        let url = format!("127.0.0.1:{port}");
        wait_for("nats-server", || std::net::TcpStream::connect(&url).is_ok())?;
        Ok(NatsServer { process, url })
    }

    /// Its resident memory (KiB) after sitting idle for a moment.
    pub fn idle_rss_kib(&self) -> Option<u64> {
        self.process.idle_rss_kib()
    }
}

/// A running `sluice serve`.
pub struct Sluice {
    process: Running,
    /// Its QUIC address.
    pub server: String,
    /// Its admin (HTTP) address.
    pub admin: String,
    /// Its development certificate, which the bench clients trust.
    pub ca: PathBuf,
}

impl Sluice {
    /// Starts `binary` with `fsync` as its policy and its data under `dir`.
    pub fn start(binary: &Path, dir: &Path, fsync: &str) -> anyhow::Result<Sluice> {
        let port = free_udp_port()?;
        let admin = free_tcp_port()?;
        let dir = dir.join(format!("sluice-{fsync}"));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("sluice.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n[storage]\nfsync = \"{fsync}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[plugins]\nwatch = false\n[limits]\n# 1000 messages of 1 KiB in one publish frame.\nmax_frame_bytes = 4194304\n",
                dir.join("data").display()
            ),
        )?;
        let log_path = dir.join("broker.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(binary)
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("failed to start sluice serve")?;
        let ca = dir.join("data").join("tls").join("cert.pem");
        let process = Running { child, dir };
        wait_for("sluice", || {
            std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("sluice is listening"))
        })?;
        Ok(Sluice {
            process,
            admin: format!("127.0.0.1:{admin}"),
            server: format!("127.0.0.1:{port}"),
            ca,
        })
    }

    /// Its resident memory (KiB) after sitting idle for a moment.
    pub fn idle_rss_kib(&self) -> Option<u64> {
        self.process.idle_rss_kib()
    }
}
