//! NATS side of `cargo xtask bench-vs-nats`.
//!
//! ```text
//! nats-harness SERVERS SCENARIO SIZE COUNT [WORKERS|RATE] [OPTIONS]
//! ```
//!
//! SERVERS is one server or a cluster's servers, separated by commas
//! (`127.0.0.1:4222,127.0.0.1:4223`); the client connects to one of them.
//!
//! Scenarios (the NATS counterparts of `sluice bench`):
//! - `core-pubsub`: core NATS, one publisher and `--subscribers`
//!   subscribers, each on its own connection; received rate.
//! - `js-publish`: JetStream async publish to a file stream, acks awaited
//!   with a bounded window (`--in-flight`, default 1,024: 64 x 16, as
//!   `sluice bench publish`).
//! - `js-batch`: the same messages in atomic batches of `--batch` (default
//!   64; one ack per batch), `--in-flight` messages' worth of batches in
//!   flight, on a stream with `allow_atomic`. COUNT only.
//! - `js-consume`: preload a stream, then WORKERS (default 4) workers on
//!   one durable pull consumer, fetching batches, each message acked.
//! - `js-latency`: JetStream publish at RATE per second, open loop, ack
//!   round trip percentiles.
//! - `core-request`: core NATS request-reply: one responder echoing the
//!   payload, WORKERS (default 1) requester connections, one request at
//!   a time each; replies per second and round-trip percentiles.
//!
//! How long (see [`window`]): without `--duration`, COUNT messages.
//! With `--duration D`, a warm-up (`--warmup`, default 1s) and then a
//! window of D; the figure is what was received or acked inside the window
//! per second of it, COUNT is the most a scenario sends (0: no bound), and
//! `js-consume` preloads COUNT messages, or with 0 publishes for twice the
//! warm-up and window first. Timed runs delete their stream afterwards.
//!
//! Options:
//! - `--duration D`, `--warmup D`: above (`3s`, `500ms`, `0.5s`).
//! - `--tls-ca PEM`: connect over TLS (required), trusting this CA.
//! - `--subscribers N`: `core-pubsub`'s subscribers (default 1).
//! - `--replicas N`: copies of the stream (default 1; 3 on a 3-server
//!   cluster is what sluice's cluster mode uses).
//! - `--in-flight N`, `--batch N`: above.
//! - `--msg-id`: a unique `Nats-Msg-Id` on every message, as sluice's
//!   nodes send.
//! - `--expect-stream`: `Nats-Expected-Stream` on every message
//!   (`js-publish`, `js-latency`), as sluice's nodes send.
//! - `--follow`: while publishing, an ordered consumer reads the stream
//!   from its start, as every sluice node follows every topic. COUNT only.
//!
//! Prints one JSON object in `sluice bench --json`'s schema.
//!
//! # Layout
//!
//! - here: arguments, connections, streams, results, the dispatch.
//! - [`window`]: how long a scenario runs and what its figure counts.
//! - [`core`] holds `core-pubsub`.
//! - [`publish`] holds the JetStream publishers and `--follow`.
//! - [`consume`] holds `js-consume`.

mod consume;
mod core;
mod publish;
/// The same rules as `sluice bench`: one file, compiled by both.
#[path = "../../../host/src/cli/bench/window.rs"]
mod window;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_nats::jetstream;

use publish::Shape;
use window::{measure, Phases, Span, Steady};

#[derive(serde::Serialize)]
struct Outcome {
    scenario: String,
    payload_bytes: usize,
    messages: u64,
    msgs_per_s: f64,
    mb_per_s: f64,
    p50_us: Option<u64>,
    p99_us: Option<u64>,
    p999_us: Option<u64>,
    /// Timed: the steady window the figure covers (seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    window_s: Option<f64>,
    /// Timed: the window was cut short (the work ran out first).
    #[serde(skip_serializing_if = "Option::is_none")]
    short_window: Option<bool>,
}

fn outcome(scenario: &str, size: usize, steady: Steady, mut lat: Vec<u64>) -> Outcome {
    lat.sort_unstable();
    let at = |q: f64| {
        (!lat.is_empty()).then(|| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)])
    };
    let timed = steady.planned.is_some();
    Outcome {
        scenario: scenario.to_owned(),
        payload_bytes: size,
        messages: steady.messages,
        msgs_per_s: steady.rate(),
        mb_per_s: steady.rate() * size as f64 / 1e6,
        p50_us: at(0.5),
        p99_us: at(0.99),
        p999_us: at(0.999),
        window_s: timed.then_some(steady.took.as_secs_f64()),
        short_window: timed.then_some(steady.short),
    }
}

/// Publishes awaiting their ack by default: `sluice bench publish`'s 16
/// requests of 64 messages.
const DEFAULT_IN_FLIGHT: usize = 64 * 16;

/// Timed `js-consume` with COUNT 0: the stream is loaded for this many
/// times the warm-up and the window (as `sluice bench queue`).
const PRELOAD_FACTOR: u32 = 2;

/// The command line, positional arguments and options apart.
struct Args {
    servers: Vec<String>,
    scenario: String,
    size: usize,
    count: u64,
    /// WORKERS (`js-consume`) or RATE (`js-latency`).
    extra: u64,
    replicas: usize,
    shape: Shape,
    follow: bool,
    /// `--warmup` and `--duration`, when timed.
    timed: Option<(Duration, Duration)>,
    tls_ca: Option<PathBuf>,
    subscribers: usize,
}

impl Args {
    /// The span the arguments ask for, its warm-up starting now.
    fn span(&self) -> Span {
        Span::new((self.count > 0).then_some(self.count), self.timed)
    }
}

const USAGE: &str = "usage: nats-harness SERVERS SCENARIO SIZE COUNT [WORKERS|RATE] [--duration D] [--warmup D] [--tls-ca PEM] [--subscribers N] [--replicas N] [--in-flight N] [--batch N] [--msg-id] [--expect-stream] [--follow]";

fn parse_args(raw: Vec<String>) -> anyhow::Result<Args> {
    let mut positional = Vec::new();
    let mut replicas = 1;
    let mut shape = Shape {
        window: DEFAULT_IN_FLIGHT,
        batch: 64,
        msg_id: false,
        expect_stream: false,
    };
    let mut follow = false;
    let (mut duration, mut warmup) = (None, Duration::from_secs(1));
    let (mut tls_ca, mut subscribers) = (None, 1);
    let mut raw = raw.into_iter();
    while let Some(arg) = raw.next() {
        let mut text = |name: &str| raw.next().with_context(|| format!("{name} needs a value"));
        let number = |name: &str, v: String| -> anyhow::Result<usize> {
            v.parse()
                .with_context(|| format!("{name} {v:?} is not a number"))
        };
        let time = |name: &str, v: String| {
            humantime::parse_duration(&v)
                .with_context(|| format!("{name} {v:?} is not a duration (3s, 500ms)"))
        };
        match arg.as_str() {
            "--replicas" => replicas = number(&arg, text(&arg)?)?,
            "--in-flight" => shape.window = number(&arg, text(&arg)?)?.max(1),
            "--batch" => shape.batch = number(&arg, text(&arg)?)?.max(1),
            "--subscribers" => subscribers = number(&arg, text(&arg)?)?.max(1),
            "--duration" => duration = Some(time(&arg, text(&arg)?)?),
            "--warmup" => warmup = time(&arg, text(&arg)?)?,
            "--tls-ca" => tls_ca = Some(PathBuf::from(text(&arg)?)),
            "--msg-id" => shape.msg_id = true,
            "--expect-stream" => shape.expect_stream = true,
            "--follow" => follow = true,
            _ => positional.push(arg),
        }
    }
    if positional.len() < 4 {
        bail!("{USAGE}");
    }
    Ok(Args {
        servers: positional[0].split(',').map(str::to_owned).collect(),
        scenario: positional[1].clone(),
        size: positional[2].parse().context("SIZE")?,
        count: positional[3].parse().context("COUNT")?,
        extra: positional
            .get(4)
            .map(|a| a.parse())
            .transpose()?
            .unwrap_or(4),
        replicas,
        shape,
        follow,
        timed: duration.map(|d| (warmup, d)),
        tls_ca,
        subscribers,
    })
}

/// A new connection to SERVERS; over TLS, trusting `--tls-ca`, with it.
async fn connect(args: &Args) -> anyhow::Result<async_nats::Client> {
    let mut options = async_nats::ConnectOptions::new();
    if let Some(ca) = &args.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    options
        .connect(args.servers.as_slice())
        .await
        .context("connecting to NATS")
}

/// A new file stream `name` (any old one deleted first) on subjects
/// `name.>`, once it has a leader: in a cluster the stream exists before
/// its replicas have elected one, and a publish meanwhile finds no stream.
async fn stream(
    js: &jetstream::Context,
    name: &str,
    replicas: usize,
    atomic: bool,
) -> anyhow::Result<jetstream::stream::Stream> {
    let _ = js.delete_stream(name).await;
    let mut stream = js
        .create_stream(jetstream::stream::Config {
            name: name.to_owned(),
            subjects: vec![format!("{name}.>")],
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas,
            allow_atomic_publish: atomic,
            ..Default::default()
        })
        .await
        .context("creating the JetStream stream")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = stream.info().await.context("reading the stream's info")?;
        let leader = info.cluster.as_ref().and_then(|c| c.leader.as_deref());
        if replicas <= 1 || leader.is_some_and(|l| !l.is_empty()) {
            return Ok(stream);
        }
        if Instant::now() > deadline {
            bail!("stream {name} has no leader after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `js-publish`, measured over the span the arguments ask for.
async fn js_publish(
    js: &jetstream::Context,
    subject: &str,
    args: &Args,
) -> anyhow::Result<(Vec<u64>, Steady)> {
    let acked = AtomicU64::new(0);
    let span = args.span();
    let work = async {
        let loaded = publish::js_publish(js, subject, args.size, span, args.shape, &acked).await?;
        Ok((loaded.latencies, loaded.last_ack))
    };
    measure(span, || acked.load(Ordering::Relaxed), work).await
}

/// `js-consume`: loads `stream`, then measures the workers acking it.
async fn js_consume(
    js: &jetstream::Context,
    stream: &jetstream::stream::Stream,
    args: &Args,
) -> anyhow::Result<Steady> {
    let preload = match args.timed {
        Some((warmup, window)) if args.count == 0 => Span::Timed {
            phases: Phases::starting_now(Duration::ZERO, (warmup + window) * PRELOAD_FACTOR),
            limit: None,
        },
        _ => Span::Count(args.count),
    };
    let loaded = AtomicU64::new(0);
    publish::js_publish(js, "benchq.x", args.size, preload, args.shape, &loaded).await?;
    let loaded = loaded.into_inner();
    let acked = Arc::new(AtomicU64::new(0));
    let span = args.span();
    let work = async {
        let last = consume::js_consume(stream, loaded, args.extra, span, acked.clone()).await?;
        Ok(((), last))
    };
    let ((), steady) = measure(span, || acked.load(Ordering::Relaxed), work).await?;
    Ok(steady)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args(std::env::args().skip(1).collect())?;
    let (scenario, size, count, extra) =
        (args.scenario.as_str(), args.size, args.count, args.extra);
    let (replicas, shape) = (args.replicas, args.shape);
    if args.timed.is_some() && (args.follow || scenario == "js-batch") {
        bail!("--follow and js-batch run COUNT messages; leave out --duration");
    }
    let client = connect(&args).await?;
    let js = jetstream::new(client.clone());
    let (result, stream) = match scenario {
        "core-pubsub" => {
            let publisher = connect(&args).await?;
            let mut subscribers = Vec::with_capacity(args.subscribers);
            for _ in 0..args.subscribers {
                subscribers.push(connect(&args).await?);
            }
            let steady = core::core_pubsub(publisher, subscribers, size, args.span()).await?;
            let name = format!("nats core pubsub 1:{}", args.subscribers);
            (outcome(&name, size, steady, Vec::new()), None)
        }
        "core-request" => {
            let responder = connect(&args).await?;
            let mut requesters = Vec::with_capacity(extra.max(1) as usize);
            for _ in 0..extra.max(1) {
                requesters.push(connect(&args).await?);
            }
            let (lat, steady) =
                core::core_request(responder, requesters, size, args.span()).await?;
            let name = format!("nats request-reply {} conn", extra.max(1));
            (outcome(&name, size, steady, lat), None)
        }
        "js-publish" => {
            let s = stream(&js, "benchpub", replicas, false).await?;
            let follower = args.follow.then(|| tokio::spawn(publish::follow(s, count)));
            let (lat, steady) = js_publish(&js, "benchpub.x", &args).await?;
            if let Some(follower) = follower {
                let seen = follower.await??;
                eprintln!(
                    "nats-harness: the follower read {seen} of {} messages",
                    steady.messages
                );
            }
            (
                outcome("jetstream publish", size, steady, lat),
                Some("benchpub"),
            )
        }
        "js-batch" => {
            stream(&js, "benchpub", replicas, true).await?;
            let (messages, took, lat) =
                publish::js_batch(&client, "benchpub.x", size, count, shape).await?;
            let steady = Steady {
                messages,
                took,
                planned: None,
                short: false,
            };
            let name = format!("jetstream atomic batches of {}", shape.batch);
            (outcome(&name, size, steady, lat), Some("benchpub"))
        }
        "js-consume" => {
            let s = stream(&js, "benchq", replicas, false).await?;
            let steady = js_consume(&js, &s, &args).await?;
            let name = format!("jetstream pull consume {extra} workers");
            (outcome(&name, size, steady, Vec::new()), Some("benchq"))
        }
        "js-latency" => {
            let s = stream(&js, "benchlat", replicas, false).await?;
            let follower = args.follow.then(|| tokio::spawn(publish::follow(s, count)));
            let start = Instant::now();
            let span = args.span();
            let lat = publish::js_latency(&js, "benchlat.x", size, span, extra, shape).await?;
            if let Some(follower) = follower {
                follower.await??;
            }
            let steady = Steady {
                messages: lat.len() as u64,
                took: span.phases().map_or(start.elapsed(), |p| p.window()),
                planned: span.phases().map(|p| p.window()),
                short: false,
            };
            let name = format!("jetstream latency @{extra}/s");
            (outcome(&name, size, steady, lat), Some("benchlat"))
        }
        other => bail!("unknown scenario {other:?}"),
    };
    // A timed run at full speed writes gigabytes; a counted one keeps its
    // stream (`bench-vs-nats --cluster` reads its placement afterwards).
    if let (Some(name), Some(_)) = (stream, args.timed) {
        if let Err(e) = js.delete_stream(name).await {
            eprintln!("nats-harness: could not delete stream {name}: {e}");
        }
    }
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
