//! `sluice bench`: throughput and latency scenarios, against a running
//! broker or one started in this process on a temporary directory
//! (`--embedded`). Every scenario is bounded in messages and in time.
//!
//! - `publish`: acked durable publishes (producers, batch, window, payload).
//! - `pubsub`: live fan-out, one publisher to N subscribers, as received;
//!   latency is publish to receive (payloads carry their send time).
//! - `queue`: a consumer group of N workers acking a preloaded topic.
//! - `latency`: one message at a time at a fixed rate (open loop: a late
//!   ack does not delay the next send), ack round trip percentiles.
//! - `pipeline`: publish throughput through no plugin, one pass-through
//!   stage, and the example order pipeline (`--embedded` only: the broker
//!   is configured with `--plugins-dir`).
//!
//! Results: a table at the end, or `--json`, one object per line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use futures_util::stream::{FuturesUnordered, StreamExt};
use sluice_client::{Client, ClientOptions, ConsumeOptions, Message, StartPosition, Trust};

use super::args::ClientArgs;
use crate::config::{Config, FsyncPolicy};

/// A scenario of `sluice bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Acked durable publish throughput.
    Publish,
    /// Live pub/sub fan-out throughput, as received.
    Pubsub,
    /// Consumer-group throughput with acks.
    Queue,
    /// Acked publish round trip at a fixed rate.
    Latency,
    /// Publish throughput with no plugin, a pass-through stage, the order pipeline.
    Pipeline,
    /// Open `--connections` idle connections and hold them; with `--admin`,
    /// the broker's resident memory before and while they are held.
    Connections,
    /// Every scenario above.
    All,
}

/// `sluice bench`
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Scenarios to run, in order.
    #[arg(value_enum, required = true)]
    pub scenarios: Vec<Scenario>,
    /// Start a broker in this process on a temporary data directory
    /// (otherwise `--server` is used).
    #[arg(long)]
    pub embedded: bool,
    /// With --embedded: the broker's fsync policy.
    #[arg(long, value_enum, default_value = "always")]
    pub fsync: FsyncArg,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Messages per scenario (per run of a pipeline variant).
    #[arg(long, short = 'n', default_value_t = 100_000)]
    pub count: u64,
    /// Messages per publish request.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Publish requests in flight per producer.
    #[arg(long, default_value_t = 16)]
    pub window: usize,
    /// Producers (`publish`), each on its own connection.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Subscribers (`pubsub`), each on its own connection.
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// Workers (`queue`), each on its own connection.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Connections (`connections`).
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// The broker's admin address (`connections`: read its memory from /metrics).
    #[arg(long)]
    pub admin: Option<std::net::SocketAddr>,
    /// Messages per second (`latency`).
    #[arg(long, default_value_t = 5_000)]
    pub rate: u64,
    /// Longest one scenario may run; it then stops and reports what it measured.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub max_time: Duration,
    /// Where the example plugins are (`pipeline`): test_hostile.wasm and the
    /// four example components.
    #[arg(long, default_value = "plugins/dist")]
    pub plugins_dir: PathBuf,
    /// One JSON object per scenario on standard output instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Connection flags (without --embedded).
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `--fsync`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FsyncArg {
    /// fsync before each ack (group commit).
    Always,
    /// fsync every 100 ms.
    Interval,
    /// Leave it to the OS.
    Never,
}

impl From<FsyncArg> for FsyncPolicy {
    fn from(f: FsyncArg) -> FsyncPolicy {
        match f {
            FsyncArg::Always => FsyncPolicy::Always,
            FsyncArg::Interval => FsyncPolicy::Interval,
            FsyncArg::Never => FsyncPolicy::Never,
        }
    }
}

/// One row of results.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// Scenario (and variant).
    pub scenario: String,
    /// Payload size.
    pub payload_bytes: usize,
    /// Messages measured (received, for fan-out).
    pub messages: u64,
    /// Messages per second.
    pub msgs_per_s: f64,
    /// Payload megabytes (10^6) per second.
    pub mb_per_s: f64,
    /// Latency percentiles (µs) where measured.
    pub p50_us: Option<u64>,
    /// 99th percentile (µs).
    pub p99_us: Option<u64>,
    /// 99.9th percentile (µs).
    pub p999_us: Option<u64>,
    /// `connections` with `--admin`: the broker's resident memory before
    /// and while the connections were held (bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_before_bytes: Option<u64>,
    /// See `rss_before_bytes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_held_bytes: Option<u64>,
}

impl Outcome {
    fn new(scenario: &str, size: usize, messages: u64, took: Duration) -> Outcome {
        let secs = took.as_secs_f64().max(1e-9);
        Outcome {
            scenario: scenario.to_owned(),
            payload_bytes: size,
            messages,
            msgs_per_s: messages as f64 / secs,
            mb_per_s: (messages as f64 * size as f64) / secs / 1e6,
            p50_us: None,
            p99_us: None,
            p999_us: None,
            rss_before_bytes: None,
            rss_held_bytes: None,
        }
    }

    fn latencies(mut self, mut samples: Vec<u64>) -> Outcome {
        if samples.is_empty() {
            return self;
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
        self.p50_us = Some(at(0.50));
        self.p99_us = Some(at(0.99));
        self.p999_us = Some(at(0.999));
        self
    }
}

/// Where the clients connect.
struct Target {
    options: ClientOptions,
    /// Kept alive while the bench runs.
    embedded: Option<(crate::Running, tempfile::TempDir)>,
    /// Topics of the pipeline variants, when the broker has them.
    pipelines: bool,
}

impl Target {
    async fn client(&self) -> anyhow::Result<Client> {
        Client::connect(self.options.clone())
            .await
            .with_context(|| format!("failed to connect to {}", self.options.server))
    }
}

/// A short random suffix so runs against one broker do not share topics.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{:x}{:x}", std::process::id(), nanos)
}

fn embedded_config(args: &BenchArgs, dir: &std::path::Path) -> anyhow::Result<Config> {
    let mut text = String::from("[plugins]\nwatch = false\n");
    let wants_pipelines = args
        .scenarios
        .iter()
        .any(|s| matches!(s, Scenario::Pipeline | Scenario::All));
    if wants_pipelines {
        let dist = std::path::absolute(&args.plugins_dir)?;
        for file in [
            "test_hostile.wasm",
            "validate_json_schema.wasm",
            "filter_json.wasm",
            "redact_pii.wasm",
            "route_by_header.wasm",
        ] {
            if !dist.join(file).exists() {
                bail!(
                    "the pipeline scenario needs {} (build the plugins with `cargo xtask plugins`, or pass --plugins-dir)",
                    dist.join(file).display()
                );
            }
        }
        text.push_str(&format!(
            r#"
[[plugin]]
name = "pass"
path = "{d}/test_hostile.wasm"
config = {{ mode = "pass" }}

[[plugin]]
name = "validate-order"
path = "{d}/validate_json_schema.wasm"
[plugin.config.schema]
type = "object"
required = ["id", "region", "total"]
[plugin.config.schema.properties]
id = {{ type = "string" }}
region = {{ type = "string", enum = ["eu", "us", "apac"] }}
total = {{ type = "number", minimum = 0 }}

[[plugin]]
name = "drop-test-orders"
path = "{d}/filter_json.wasm"
config = {{ conditions = [{{ field = "test", exists = false }}] }}

[[plugin]]
name = "redact-pii"
path = "{d}/redact_pii.wasm"
config = {{ fields = ["customer.phone"] }}

[[plugin]]
name = "route-by-region"
path = "{d}/route_by_header.wasm"
config = {{ header = "region", prefix = "bench.orders.", fallback = "bench.orders.unrouted" }}

[[pipeline]]
topics = "bench.pipeline.pass.>"
stages = ["pass"]

[[pipeline]]
topics = "bench.pipeline.orders.>"
stages = ["validate-order", "drop-test-orders", "redact-pii", "route-by-region"]
"#,
            d = dist.display()
        ));
    }
    let mut config = Config::parse(&text, "<bench>")?;
    config.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.data_dir = dir.join("data");
    config.storage.fsync = args.fsync.into();
    config.admin.enabled = false;
    Ok(config)
}

async fn target(args: &BenchArgs) -> anyhow::Result<Target> {
    if !args.embedded {
        let options = ClientOptions::new(args.client.server.clone())
            .trust(super::connect::trust(&args.client)?)
            .client_name("sluice-bench");
        return Ok(Target {
            options,
            embedded: None,
            pipelines: false,
        });
    }
    let dir = tempfile::Builder::new().prefix("sluice-bench-").tempdir()?;
    let config = embedded_config(args, dir.path())?;
    let pipelines = !config.pipelines.is_empty();
    let running = crate::start(config)
        .await
        .context("failed to start the embedded broker")?;
    let options = ClientOptions::new(running.local_addr().to_string())
        .trust(Trust::CaFile(running.cert_path().to_path_buf()))
        .client_name("sluice-bench");
    Ok(Target {
        options,
        embedded: Some((running, dir)),
        pipelines,
    })
}

fn bar(total: u64, label: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{label:>22} {{bar:30}} {{pos}}/{{len}} {{per_sec}} eta {{eta}}"
    )) {
        bar.set_style(style);
    }
    bar
}

/// Runs `sluice bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.window == 0 || args.count == 0 {
        bail!("--batch, --window and --count must be at least 1");
    }
    if args.producers == 0 || args.subscribers == 0 || args.workers == 0 || args.rate == 0 {
        bail!("--producers, --subscribers, --workers and --rate must be at least 1");
    }
    let mut scenarios = Vec::new();
    for s in &args.scenarios {
        match s {
            Scenario::All => scenarios.extend([
                Scenario::Publish,
                Scenario::Pubsub,
                Scenario::Queue,
                Scenario::Latency,
                Scenario::Pipeline,
                Scenario::Connections,
            ]),
            other => scenarios.push(*other),
        }
    }
    if scenarios.contains(&Scenario::Pipeline) && !args.embedded {
        bail!("the pipeline scenario needs --embedded (the broker must have the bench pipelines configured)");
    }
    let target = target(&args).await?;
    let mut results = Vec::new();
    for scenario in scenarios {
        let rows = match scenario {
            Scenario::Publish => vec![publish(&args, &target, "publish", None).await?],
            Scenario::Pubsub => vec![pubsub(&args, &target).await?],
            Scenario::Queue => vec![queue(&args, &target).await?],
            Scenario::Latency => vec![latency(&args, &target).await?],
            Scenario::Pipeline => pipeline(&args, &target).await?,
            Scenario::Connections => vec![connections(&args, &target).await?],
            Scenario::All => unreachable!("expanded above"),
        };
        for row in rows {
            if args.json {
                println!("{}", serde_json::to_string(&row)?);
            }
            results.push(row);
        }
    }
    if !args.json {
        print_table(&args, &results);
    }
    if let Some((running, _dir)) = target.embedded {
        running.stop().await?;
    }
    Ok(())
}

fn print_table(args: &BenchArgs, results: &[Outcome]) {
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    println!(
        "{:<28} {:>8} {:>10} {:>12} {:>9} {:>9} {:>9} {:>9}",
        "scenario", "payload", "messages", "msg/s", "MB/s", "p50 µs", "p99 µs", "p99.9 µs"
    );
    for r in results {
        println!(
            "{:<28} {:>8} {:>10} {:>12.0} {:>9.1} {:>9} {:>9} {:>9}",
            r.scenario,
            r.payload_bytes,
            r.messages,
            r.msgs_per_s,
            r.mb_per_s,
            opt(r.p50_us),
            opt(r.p99_us),
            opt(r.p999_us)
        );
    }
    if args.embedded {
        println!(
            "(embedded broker, fsync={:?}; broker and clients share this machine's cores)",
            args.fsync
        );
    }
}

/// One message in this many carries its send time (pub/sub latency samples).
const SAMPLE_EVERY: u64 = 64;

/// The payload of a bench message: `size` bytes, the first 8 the send time
/// (µs since `epoch`) when there is room.
fn payload(size: usize, epoch: Instant) -> Bytes {
    let mut p = vec![b'x'; size];
    if size >= 8 {
        p[..8].copy_from_slice(&(epoch.elapsed().as_micros() as u64).to_le_bytes());
    }
    Bytes::from(p)
}

fn sent_at(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.get(..8)?.try_into().ok()?))
}

/// Publishes `count` messages made by `make` from `producers` connections;
/// returns (messages acked, time, per-request ack latencies in µs).
async fn publish_load(
    args: &BenchArgs,
    target: &Target,
    label: &str,
    make: Arc<dyn Fn(u64) -> Message + Send + Sync>,
) -> anyhow::Result<(u64, Duration, Vec<u64>)> {
    let count = args.count;
    let progress = bar(count, label);
    let acked = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + args.max_time;
    let mut clients = Vec::new();
    for _ in 0..args.producers {
        clients.push(target.client().await?);
    }
    let start = Instant::now();
    let mut tasks = FuturesUnordered::new();
    let per = count.div_ceil(args.producers as u64);
    for (p, client) in clients.into_iter().enumerate() {
        let first = p as u64 * per;
        let last = ((p as u64 + 1) * per).min(count);
        let (batch, window) = (args.batch as u64, args.window);
        let make = make.clone();
        let acked = acked.clone();
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut in_flight = FuturesUnordered::new();
            let mut next = first;
            loop {
                while next < last && in_flight.len() < window && Instant::now() < deadline {
                    let end = (next + batch).min(last);
                    let messages: Vec<Message> = (next..end).map(|i| make(i)).collect();
                    let client = client.clone();
                    in_flight.push(async move {
                        let sent = Instant::now();
                        let ack = client.publish_batch(messages).await;
                        (ack, sent.elapsed())
                    });
                    next = end;
                }
                let Some((ack, took)) = in_flight.next().await else {
                    break;
                };
                let ack = ack.context("publish failed")?;
                // A bench message that is not stored means the scenario is
                // not measuring what it says.
                if let Some(other) = ack
                    .outcomes
                    .iter()
                    .find(|o| !matches!(o, sluice_client::MessageOutcome::Stored(_)))
                {
                    bail!(
                        "a bench message was not stored: {}",
                        super::publish::describe(other)
                    );
                }
                let n = ack.outcomes.len() as u64;
                acked.fetch_add(n, Ordering::Relaxed);
                progress.inc(n);
                latencies.push(took.as_micros() as u64);
            }
            client.close().await;
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    while let Some(joined) = tasks.next().await {
        latencies.extend(joined??);
    }
    let took = start.elapsed();
    progress.finish_and_clear();
    Ok((acked.load(Ordering::Relaxed), took, latencies))
}

async fn publish(
    args: &BenchArgs,
    target: &Target,
    label: &str,
    topic: Option<String>,
) -> anyhow::Result<Outcome> {
    let topic = topic.unwrap_or_else(|| format!("bench.publish.{}", run_id()));
    let body = Bytes::from(vec![b'x'; args.size]);
    let make = Arc::new(move |_: u64| Message::new(topic.clone(), body.clone()));
    let (n, took, latencies) = publish_load(args, target, label, make).await?;
    Ok(Outcome::new(label, args.size, n, took).latencies(latencies))
}

async fn pubsub(args: &BenchArgs, target: &Target) -> anyhow::Result<Outcome> {
    let topic = format!("bench.pubsub.{}", run_id());
    let count = args.count;
    let epoch = Instant::now();
    let deadline = epoch + args.max_time;
    let mut receivers = FuturesUnordered::new();
    for _ in 0..args.subscribers {
        let client = target.client().await?;
        let mut sub = client
            .subscribe(topic.clone(), StartPosition::Latest)
            .await?;
        receivers.push(tokio::spawn(async move {
            let mut got = 0u64;
            let mut latencies = Vec::with_capacity((count / SAMPLE_EVERY + 1) as usize);
            let mut last = epoch;
            // Quiet for 2 s (messages dropped for a slow subscriber never
            // come) or past the deadline: done. The clock is read only for
            // sampled messages, so measuring costs the receiver little.
            let idle = tokio::time::sleep(Duration::from_secs(2));
            tokio::pin!(idle);
            while got < count {
                tokio::select! {
                    m = sub.recv() => match m {
                        Some(Ok(m)) => {
                            got += 1;
                            if m.offset.is_multiple_of(SAMPLE_EVERY) || got == count {
                                let now = Instant::now();
                                last = now;
                                if let Some(sent) = sent_at(&m.payload).filter(|_| m.offset.is_multiple_of(SAMPLE_EVERY)) {
                                    let at = now.duration_since(epoch).as_micros() as u64;
                                    latencies.push(at.saturating_sub(sent));
                                }
                                let until = (now + Duration::from_secs(2)).min(deadline);
                                idle.as_mut().reset(until.into());
                            }
                        }
                        _ => break,
                    },
                    () = &mut idle => break,
                }
            }
            client.close().await;
            (got, last, latencies)
        }));
    }
    let size = args.size;
    let plain = Bytes::from(vec![b'x'; size]);
    // Every SAMPLE_EVERY-th message (by offset: the topic is fresh) carries
    // its send time; the rest share one buffer.
    let make = Arc::new(move |i: u64| {
        let body = if i.is_multiple_of(SAMPLE_EVERY) {
            payload(size, epoch)
        } else {
            plain.clone()
        };
        Message::new(topic.clone(), body)
    });
    let start = Instant::now();
    let (sent, _, _) = publish_load(args, target, "pubsub", make).await?;
    let mut received = 0;
    let mut latencies = Vec::new();
    let mut last = start;
    while let Some(joined) = receivers.next().await {
        let (got, at, lat) = joined?;
        received += got;
        last = last.max(at);
        latencies.extend(lat);
    }
    let expected = sent * args.subscribers as u64;
    if received < expected {
        eprintln!(
            "pubsub: {received} of {expected} messages received (live subscriptions drop for a subscriber that falls behind)"
        );
    }
    let label = format!("pubsub 1:{}", args.subscribers);
    Ok(Outcome::new(&label, args.size, received, last - start).latencies(latencies))
}

async fn queue(args: &BenchArgs, target: &Target) -> anyhow::Result<Outcome> {
    let id = run_id();
    let topic = format!("bench.queue.{id}");
    let body = Bytes::from(vec![b'x'; args.size]);
    let t = topic.clone();
    let make = Arc::new(move |_: u64| Message::new(t.clone(), body.clone()));
    let (loaded, _, _) = publish_load(args, target, "queue (loading)", make).await?;
    let progress = bar(loaded, "queue");
    let acked = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + args.max_time;
    let start = Instant::now();
    let last_ack = Arc::new(AtomicU64::new(0));
    let mut workers = FuturesUnordered::new();
    for _ in 0..args.workers {
        let client = target.client().await?;
        let mut consumer = client
            .consume(
                topic.clone(),
                format!("bench-{id}"),
                ConsumeOptions::default()
                    .start(StartPosition::Earliest)
                    .max_in_flight(256),
            )
            .await?;
        let acked = acked.clone();
        let last_ack = last_ack.clone();
        let progress = progress.clone();
        workers.push(tokio::spawn(async move {
            let mut acks = FuturesUnordered::new();
            let record = |n: &AtomicU64| {
                n.fetch_add(1, Ordering::Relaxed);
                progress.inc(1);
                last_ack.fetch_max(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
            };
            while acked.load(Ordering::Relaxed) < loaded && Instant::now() < deadline {
                tokio::select! {
                    delivery = consumer.recv() => match delivery {
                        Some(Ok(d)) => acks.push(async move { d.ack().await }),
                        _ => break,
                    },
                    Some(result) = acks.next(), if !acks.is_empty() => {
                        result?;
                        record(&acked);
                    }
                    () = tokio::time::sleep(Duration::from_secs(2)) => break,
                }
            }
            while let Some(result) = acks.next().await {
                result?;
                record(&acked);
            }
            drop(consumer);
            client.close().await;
            anyhow::Ok(())
        }));
    }
    while let Some(joined) = workers.next().await {
        joined??;
    }
    progress.finish_and_clear();
    let took = Duration::from_nanos(last_ack.load(Ordering::Relaxed));
    let label = format!("queue {} workers", args.workers);
    Ok(Outcome::new(
        &label,
        args.size,
        acked.load(Ordering::Relaxed),
        took,
    ))
}

async fn latency(args: &BenchArgs, target: &Target) -> anyhow::Result<Outcome> {
    let topic = format!("bench.latency.{}", run_id());
    let client = target.client().await?;
    let count = args
        .count
        .min(args.rate.saturating_mul(args.max_time.as_secs().max(1)));
    let progress = bar(count, "latency");
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let body = Bytes::from(vec![b'x'; args.size]);
    let start = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut latencies = Vec::with_capacity(count as usize);
    let mut sent = 0u64;
    while sent < count || !in_flight.is_empty() {
        // Open loop: message i is due at start + i * interval, whatever the
        // acks do (a slow ack never delays later sends); its latency counts
        // from when it was sent (the timer's own lateness is the client's).
        let due = start + interval.mul_f64(sent as f64);
        tokio::select! {
            () = tokio::time::sleep_until(due.into()), if sent < count => {
                let client = client.clone();
                let message = Message::new(topic.clone(), body.clone());
                let sent_at = Instant::now();
                in_flight.push(async move {
                    let result = client.publish_message(message).await;
                    (result, sent_at.elapsed())
                });
                sent += 1;
            }
            Some((result, took)) = in_flight.next(), if !in_flight.is_empty() => {
                result.context("publish failed")?;
                latencies.push(took.as_micros() as u64);
                progress.inc(1);
            }
        }
    }
    progress.finish_and_clear();
    let took = start.elapsed();
    client.close().await;
    let label = format!("latency @{}/s", args.rate);
    Ok(Outcome::new(&label, args.size, latencies.len() as u64, took).latencies(latencies))
}

async fn pipeline(args: &BenchArgs, target: &Target) -> anyhow::Result<Vec<Outcome>> {
    if !target.pipelines {
        bail!("the pipeline scenario needs --embedded");
    }
    let id = run_id();
    let mut rows = vec![
        publish(
            args,
            target,
            "pipeline none",
            Some(format!("bench.plain.{id}")),
        )
        .await?,
        publish(
            args,
            target,
            "pipeline pass-through",
            Some(format!("bench.pipeline.pass.{id}")),
        )
        .await?,
    ];
    // A valid order of about --size bytes, routed to bench.orders.eu.
    let filler = args.size.saturating_sub(120);
    let order = Bytes::from(format!(
        r#"{{"id":"o-1","region":"eu","total":42.5,"customer":{{"email":"ann@example.com","phone":"+44 20 7946 0000"}},"note":"{}"}}"#,
        "n".repeat(filler)
    ));
    let topic = format!("bench.pipeline.orders.{id}");
    let make =
        Arc::new(move |_: u64| Message::new(topic.clone(), order.clone()).header("region", "eu"));
    let (n, took, latencies) = publish_load(args, target, "pipeline orders", make).await?;
    rows.push(Outcome::new("pipeline orders (4 stages)", args.size, n, took).latencies(latencies));
    Ok(rows)
}

/// The broker's resident memory, from its `/metrics`.
async fn broker_rss(admin: std::net::SocketAddr) -> anyhow::Result<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(admin)
        .await
        .with_context(|| format!("cannot reach the admin listener at {admin}"))?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: sluice\r\n\r\n")
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    text.lines()
        .find_map(|l| l.strip_prefix("sluice_process_resident_memory_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .context("the broker's /metrics has no sluice_process_resident_memory_bytes")
}

async fn connections(args: &BenchArgs, target: &Target) -> anyhow::Result<Outcome> {
    let before = match args.admin {
        Some(admin) => Some(broker_rss(admin).await?),
        None => None,
    };
    let progress = bar(args.connections as u64, "connections");
    let deadline = Instant::now() + args.max_time;
    let start = Instant::now();
    let mut clients = Vec::with_capacity(args.connections);
    let mut setup = Vec::with_capacity(args.connections);
    while clients.len() < args.connections && Instant::now() < deadline {
        let t = Instant::now();
        let client = target.client().await?;
        client.ping().await.context("ping on a new connection")?;
        setup.push(t.elapsed().as_micros() as u64);
        clients.push(client);
        progress.inc(1);
    }
    let took = start.elapsed();
    progress.finish_and_clear();
    // Let the broker settle (handshake buffers freed, keep-alives flowing).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut held_rss = None;
    if let (Some(admin), Some(before)) = (args.admin, before) {
        let held = broker_rss(admin).await?;
        held_rss = Some(held);
        eprintln!(
            "connections: broker RSS {:.1} MiB idle, {:.1} MiB with {} connections ({:.1} KiB each)",
            before as f64 / 1048576.0,
            held as f64 / 1048576.0,
            clients.len(),
            held.saturating_sub(before) as f64 / 1024.0 / clients.len().max(1) as f64
        );
    }
    let n = clients.len() as u64;
    for client in clients {
        client.close().await;
    }
    let label = "connections (setup + ping)";
    let mut row = Outcome::new(label, 0, n, took).latencies(setup);
    row.rss_before_bytes = before;
    row.rss_held_bytes = held_rss;
    Ok(row)
}
