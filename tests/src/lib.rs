//! Harness of the sluice end-to-end tests.
//!
//! - [`TestBroker`]: a real broker (`sluice::start`) on `127.0.0.1:0` with a
//!   temporary data directory, that can be stopped and restarted on the same
//!   data, and hands out real clients (`sluice_client::Client`) that trust its
//!   self-signed certificate.
//! - [`RawClient`] / [`RawControl`]: a bare QUIC connection and control stream
//!   for the bad-input tests: any ALPN, any bytes, any frame.
//! - [`ChildBroker`]: the `sluice-under-test` binary run as a child process
//!   (crash tests), killed when dropped.
//! - Bounded waiting helpers: [`bounded`], [`collect`], [`wait_until`],
//!   [`fetch_all`]. Every wait in the suite goes through a deadline.
//! - [`init_tracing`]: logs of the broker and client, filtered by `RUST_LOG`,
//!   captured per test.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use serde::Serialize;
use sluice_client::wire::{FrameReader, WireError};
use sluice_client::{Client, ClientOptions, Delivered, StartPosition, Subscription, Trust};
use sluice_proto::{ClientFrame, Hello, Request, RequestBody, ServerFrame, PROTOCOL_VERSION};

/// The default bound of a single wait (a response, a batch of deliveries).
pub const WAIT: Duration = Duration::from_secs(10);

/// Frame limit used by the raw client when encoding and reading frames.
const RAW_MAX_FRAME_BYTES: u32 = 16 * 1024 * 1024;

/// A component built by `cargo xtask plugins` into `plugins/dist/`;
/// panics with the command to run when it is missing.
pub fn plugin_dist(file: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/dist")
        .join(file);
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask plugins` (cargo xtask test does)",
        path.display()
    );
    path
}

/// Initialises tracing once per test binary: `RUST_LOG` filters, output goes
/// through the test writer so it is shown only for failing tests.
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
    });
}

/// Awaits `fut` for at most `limit`; panics naming `what` when it takes longer.
pub async fn bounded_for<F: Future>(what: &str, limit: Duration, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// [`bounded_for`] with the default bound [`WAIT`].
pub async fn bounded<F: Future>(what: &str, fut: F) -> F::Output {
    bounded_for(what, WAIT, fut).await
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`;
/// panics naming `what` (and the last state seen, via `check`'s `Err`) otherwise.
pub async fn wait_until<T, E, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {limit:?} waiting for {what}; last state: {last:?}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Receives exactly `n` messages from `sub`, failing if the subscription ends,
/// errors, or the messages do not arrive within `limit`.
pub async fn collect(sub: &mut Subscription, n: usize, limit: Duration) -> Vec<Delivered> {
    let mut got = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + limit;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, sub.recv()).await {
            Ok(Some(Ok(message))) => got.push(message),
            Ok(Some(Err(e))) => panic!(
                "subscription {} failed after {} of {n} messages: {e}",
                sub.pattern(),
                got.len()
            ),
            Ok(None) => panic!(
                "subscription {} ended after {} of {n} messages",
                sub.pattern(),
                got.len()
            ),
            Err(_) => panic!(
                "subscription {} received {} of {n} messages within {limit:?}: {:?}",
                sub.pattern(),
                got.len(),
                summary(&got)
            ),
        }
    }
    got
}

/// Receives messages until one satisfies `last`, which is included; bounded by `limit`.
pub async fn collect_until(
    sub: &mut Subscription,
    limit: Duration,
    mut last: impl FnMut(&Delivered) -> bool,
) -> Vec<Delivered> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, sub.recv()).await {
            Ok(Some(Ok(message))) => {
                let done = last(&message);
                got.push(message);
                if done {
                    return got;
                }
            }
            Ok(Some(Err(e))) => panic!("subscription {} failed: {e}", sub.pattern()),
            Ok(None) => panic!("subscription {} ended early", sub.pattern()),
            Err(_) => panic!(
                "subscription {}: the awaited message did not arrive within {limit:?}; got {:?}",
                sub.pattern(),
                summary(&got)
            ),
        }
    }
}

/// `(topic, offset, payload)` of each message, for readable assertions.
pub fn summary(messages: &[Delivered]) -> Vec<(String, u64, String)> {
    messages
        .iter()
        .map(|m| {
            (
                m.topic.clone(),
                m.offset,
                String::from_utf8_lossy(&m.payload).into_owned(),
            )
        })
        .collect()
}

/// Offsets of `messages`, in order.
pub fn offsets(messages: &[Delivered]) -> Vec<u64> {
    messages.iter().map(|m| m.offset).collect()
}

/// Fetches everything stored in `topic` from `from`, batch after batch, until
/// the fetch reaches the end offset it reports. Bounded.
pub async fn fetch_all(
    client: &Client,
    topic: &str,
    from: StartPosition,
) -> anyhow::Result<Vec<Delivered>> {
    let mut out = Vec::new();
    let mut position = from;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let batch = bounded("a fetch", client.fetch(topic, position, 1000))
            .await
            .with_context(|| format!("fetch {topic} from {position:?}"))?;
        let done = batch.messages.is_empty() || batch.next_offset >= batch.end_offset;
        out.extend(batch.messages);
        if done {
            return Ok(out);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "fetching {topic} did not finish in time"
        );
        position = StartPosition::Offset(batch.next_offset);
    }
}

/// Milliseconds since the Unix epoch, as the broker stamps messages.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Client options for a broker at `addr` whose certificate is `cert`.
pub fn client_options(addr: SocketAddr, cert: &Path) -> ClientOptions {
    let mut options = ClientOptions::new(addr.to_string())
        .trust(Trust::CaFile(cert.to_path_buf()))
        .client_name("sluice-e2e");
    options.connect_timeout = Duration::from_secs(5);
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
        init_tracing();
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
            bounded_for(
                "the broker to stop",
                Duration::from_secs(20),
                running.stop(),
            )
            .await?;
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

/// A rustls client config trusting `cert` (PEM), TLS
/// 1.3, offering `alpn`.
pub fn raw_tls_config(cert: &Path, alpn: &[&[u8]]) -> anyhow::Result<rustls::ClientConfig> {
    let pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for der in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(der?)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Ok(config)
}

/// A bare QUIC connection to a broker, for sending what the real client never would.
pub struct RawClient {
    /// The endpoint (kept alive with the connection).
    pub endpoint: quinn::Endpoint,
    /// The connection.
    pub conn: quinn::Connection,
}

impl RawClient {
    /// Connects with ALPN `sluice/1`, trusting `cert`.
    pub async fn connect(addr: SocketAddr, cert: &Path) -> anyhow::Result<RawClient> {
        Ok(Self::connect_with_alpn(addr, cert, &[sluice_proto::ALPN]).await??)
    }

    /// Connects offering `alpn`. The outer error is a set-up failure of the
    /// harness; the inner one is how the QUIC handshake failed.
    pub async fn connect_with_alpn(
        addr: SocketAddr,
        cert: &Path,
        alpn: &[&[u8]],
    ) -> anyhow::Result<Result<RawClient, quinn::ConnectionError>> {
        let tls = raw_tls_config(cert, alpn)?;
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
        let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
        let connecting = endpoint.connect(addr, "127.0.0.1")?;
        match bounded("a QUIC handshake", connecting).await {
            Ok(conn) => Ok(Ok(RawClient { endpoint, conn })),
            Err(e) => Ok(Err(e)),
        }
    }

    /// Opens the bidirectional control stream. Nothing reaches the broker
    /// until something is written on it.
    pub async fn open_control(&self) -> anyhow::Result<RawControl> {
        let (send, recv) = self.conn.open_bi().await?;
        Ok(RawControl {
            send,
            reader: FrameReader::new(recv, RAW_MAX_FRAME_BYTES),
        })
    }

    /// Waits (bounded) for the broker to close the connection and returns why.
    pub async fn closed(&self) -> quinn::ConnectionError {
        bounded("the broker to close the connection", self.conn.closed()).await
    }

    /// The `(error code, reason)` the broker closed the connection with, if it
    /// closed it with an application close (waits, bounded).
    pub async fn close_reason(&self) -> Option<(u64, String)> {
        match self.closed().await {
            quinn::ConnectionError::ApplicationClosed(close) => Some((
                close.error_code.into_inner(),
                String::from_utf8_lossy(&close.reason).into_owned(),
            )),
            _ => None,
        }
    }
}

impl Drop for RawClient {
    fn drop(&mut self) {
        self.conn.close(0u32.into(), b"test done");
    }
}

/// The control stream of a [`RawClient`].
pub struct RawControl {
    /// Where bytes go to the broker.
    pub send: quinn::SendStream,
    /// Frames from the broker.
    pub reader: FrameReader,
}

impl RawControl {
    /// Writes raw bytes.
    pub async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.send.write_all(bytes).await?;
        Ok(())
    }

    /// Encodes any serialisable value as a frame and writes it.
    pub async fn send_frame<T: Serialize>(&mut self, frame: &T) -> anyhow::Result<()> {
        let bytes: Bytes = sluice_proto::frame::encode(frame, RAW_MAX_FRAME_BYTES)?;
        self.write(&bytes).await
    }

    /// Sends a Hello of `version`.
    pub async fn send_hello(&mut self, version: u16) -> anyhow::Result<()> {
        self.send_frame(&ClientFrame::Hello(Hello {
            version,
            token: None,
            client_name: "sluice-e2e-raw".into(),
            features: Vec::new(),
        }))
        .await
    }

    /// Sends a valid Hello and expects a Welcome.
    pub async fn handshake(&mut self) -> anyhow::Result<sluice_proto::Welcome> {
        self.send_hello(PROTOCOL_VERSION).await?;
        match self.next().await? {
            Some(ServerFrame::Welcome(welcome)) => Ok(welcome),
            other => anyhow::bail!("expected Welcome, got {other:?}"),
        }
    }

    /// Sends a request.
    pub async fn send_request(&mut self, id: u64, body: RequestBody) -> anyhow::Result<()> {
        self.send_frame(&ClientFrame::Request(Request { id, body }))
            .await
    }

    /// Finishes the sending side.
    pub fn finish(&mut self) {
        let _ = self.send.finish();
    }

    /// The next frame from the broker (bounded); `Ok(None)` when the broker
    /// finished the stream.
    pub async fn next(&mut self) -> Result<Option<ServerFrame>, WireError> {
        bounded(
            "a frame from the broker",
            self.reader.next_frame::<ServerFrame>(),
        )
        .await
    }
}

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
        // Wait until it accepts a real client.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                anyhow::bail!(
                    "{} exited with {status} before accepting clients; its output:\n{}",
                    self.binary.display(),
                    self.log()
                );
            }
            match self.client().await {
                Ok(client) => {
                    client.close().await;
                    return Ok(());
                }
                Err(e) if Instant::now() >= deadline => {
                    anyhow::bail!(
                        "the child broker did not accept clients within 30 s: {e}; its output:\n{}",
                        self.log()
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// What the child printed so far (all runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
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

/// A well-behaved client publishing to `steady` (awaiting each ack, a
/// short pause between) and subscribed to it from the start, while a test
/// misbehaves beside it.
pub struct Steady {
    /// The client (for more checks that it still works).
    pub client: Client,
    sub: Subscription,
    stop: Arc<std::sync::atomic::AtomicBool>,
    publisher: tokio::task::JoinHandle<anyhow::Result<u64>>,
}

impl Steady {
    /// Starts publishing `m0`, `m1`, ... to `steady` with `client`.
    pub async fn start(client: Client) -> anyhow::Result<Steady> {
        use std::sync::atomic::Ordering;
        let sub = client.subscribe("steady", StartPosition::Earliest).await?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let publisher = tokio::spawn({
            let client = client.clone();
            let stop = stop.clone();
            async move {
                let mut next = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let stored = bounded(
                        "a steady publish",
                        client.publish("steady", format!("m{next}")),
                    )
                    .await?;
                    anyhow::ensure!(stored.offset == next, "m{next} stored at {}", stored.offset);
                    next += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Ok(next)
            }
        });
        Ok(Steady {
            client,
            sub,
            stop,
            publisher,
        })
    }

    /// Stops publishing and checks that the subscription got, and the topic
    /// holds, every acknowledged message exactly once, in order; returns
    /// how many.
    pub async fn finish(mut self) -> anyhow::Result<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let count = bounded("the steady publisher", self.publisher).await??;
        let got = collect(&mut self.sub, count as usize, Duration::from_secs(10)).await;
        anyhow::ensure!(
            offsets(&got) == (0..count).collect::<Vec<_>>(),
            "steady messages missing or out of order"
        );
        anyhow::ensure!(
            got.iter()
                .enumerate()
                .all(|(i, m)| m.payload == format!("m{i}").as_bytes()),
            "steady payloads changed"
        );
        let stored = fetch_all(&self.client, "steady", StartPosition::Earliest).await?;
        anyhow::ensure!(stored == got, "stored differs from delivered");
        Ok(count)
    }
}
