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
//! - `core-pubsub`: core NATS, one publisher, one subscriber, received rate.
//! - `js-publish`: JetStream async publish to a file stream, acks awaited
//!   with a bounded window (`--in-flight`, default 1,024: 64 x 16, as
//!   `sluice bench publish`).
//! - `js-batch`: the same messages in atomic batches of `--batch` (default
//!   64; one ack per batch), `--in-flight` messages' worth of batches in
//!   flight, on a stream with `allow_atomic`.
//! - `js-consume`: preload a stream, then WORKERS pull consumers on one
//!   durable consumer, each message acked.
//! - `js-latency`: JetStream publish at RATE per second, open loop, ack
//!   round trip percentiles.
//!
//! Options:
//! - `--replicas N`: copies of the stream (default 1; 3 on a 3-server
//!   cluster is what sluice's cluster mode uses).
//! - `--in-flight N`, `--batch N`: above.
//! - `--msg-id`: a unique `Nats-Msg-Id` on every message, as sluice's
//!   nodes send.
//! - `--expect-stream`: `Nats-Expected-Stream` on every message
//!   (`js-publish`, `js-latency`), as sluice's nodes send.
//! - `--follow`: while publishing, an ordered consumer reads the stream
//!   from its start, as every sluice node follows every topic.
//!
//! Prints one JSON object in `sluice bench --json`'s schema.
//!
//! # Layout
//!
//! - here: arguments, streams, results, `core-pubsub`.
//! - [`publish`] holds the JetStream publishers and `--follow`.
//! - [`consume`] holds `js-consume`.

mod consume;
mod publish;

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_nats::jetstream;
use bytes::Bytes;
use futures_util::stream::StreamExt;

use publish::{Published, Shape};

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
}

fn outcome(
    scenario: &str,
    size: usize,
    messages: u64,
    took: Duration,
    mut lat: Vec<u64>,
) -> Outcome {
    let secs = took.as_secs_f64().max(1e-9);
    lat.sort_unstable();
    let at = |q: f64| {
        (!lat.is_empty()).then(|| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)])
    };
    Outcome {
        scenario: scenario.to_owned(),
        payload_bytes: size,
        messages,
        msgs_per_s: messages as f64 / secs,
        mb_per_s: messages as f64 * size as f64 / secs / 1e6,
        p50_us: at(0.5),
        p99_us: at(0.99),
        p999_us: at(0.999),
    }
}

/// Publishes awaiting their ack by default: `sluice bench publish`'s 16
/// requests of 64 messages.
const DEFAULT_IN_FLIGHT: usize = 64 * 16;

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
}

const USAGE: &str = "usage: nats-harness SERVERS SCENARIO SIZE COUNT [WORKERS|RATE] [--replicas N] [--in-flight N] [--batch N] [--msg-id] [--expect-stream] [--follow]";

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
    let mut raw = raw.into_iter();
    while let Some(arg) = raw.next() {
        let mut value = |name: &str| -> anyhow::Result<usize> {
            let v = raw
                .next()
                .with_context(|| format!("{name} needs a value"))?;
            v.parse()
                .with_context(|| format!("{name} {v:?} is not a number"))
        };
        match arg.as_str() {
            "--replicas" => replicas = value("--replicas")?,
            "--in-flight" => shape.window = value("--in-flight")?.max(1),
            "--batch" => shape.batch = value("--batch")?.max(1),
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
    })
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

/// `core-pubsub`: one publisher, one subscriber, the received rate.
async fn core_pubsub(
    client: &async_nats::Client,
    size: usize,
    count: u64,
) -> anyhow::Result<Outcome> {
    let mut sub = client.subscribe("bench.core").await?;
    client.flush().await?;
    let receiver = tokio::spawn(async move {
        // As sluice bench: the clock is read every 64 messages.
        let mut got = 0u64;
        let mut last = Instant::now();
        let idle = tokio::time::sleep(Duration::from_secs(2));
        tokio::pin!(idle);
        while got < count {
            tokio::select! {
                m = sub.next() => match m {
                    Some(_) => {
                        got += 1;
                        if got.is_multiple_of(64) || got == count {
                            last = Instant::now();
                            idle.as_mut().reset((last + Duration::from_secs(2)).into());
                        }
                    }
                    None => break,
                },
                () = &mut idle => break,
            }
        }
        (got, last)
    });
    let body = Bytes::from(vec![b'x'; size]);
    let start = Instant::now();
    for _ in 0..count {
        client.publish("bench.core", body.clone()).await?;
    }
    client.flush().await?;
    let (got, last) = receiver.await?;
    Ok(outcome(
        "nats core pubsub 1:1",
        size,
        got,
        last - start,
        Vec::new(),
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args(std::env::args().skip(1).collect())?;
    let (scenario, size, count, extra) =
        (args.scenario.as_str(), args.size, args.count, args.extra);
    let (replicas, shape) = (args.replicas, args.shape);
    let client = async_nats::connect(args.servers.as_slice())
        .await
        .context("connecting to NATS")?;
    let js = jetstream::new(client.clone());
    let result = match scenario {
        "core-pubsub" => core_pubsub(&client, size, count).await?,
        "js-publish" | "js-batch" => {
            let atomic = scenario == "js-batch";
            let s = stream(&js, "benchpub", replicas, atomic).await?;
            let follower = args.follow.then(|| tokio::spawn(publish::follow(s, count)));
            let (n, took, lat): Published = if atomic {
                publish::js_batch(&client, "benchpub.x", size, count, shape).await?
            } else {
                publish::js_publish(&js, "benchpub.x", size, count, shape).await?
            };
            if let Some(follower) = follower {
                let seen = follower.await??;
                eprintln!("nats-harness: the follower read {seen} of {n} messages");
            }
            let name = match atomic {
                true => format!("jetstream atomic batches of {}", shape.batch),
                false => "jetstream publish".to_owned(),
            };
            outcome(&name, size, n, took, lat)
        }
        "js-consume" => {
            let s = stream(&js, "benchq", replicas, false).await?;
            publish::js_publish(&js, "benchq.x", size, count, shape).await?;
            let (acked, took) = consume::js_consume(&s, count, extra).await?;
            let name = format!("jetstream pull consume {extra} workers");
            outcome(&name, size, acked, took, Vec::new())
        }
        "js-latency" => {
            let s = stream(&js, "benchlat", replicas, false).await?;
            let follower = args.follow.then(|| tokio::spawn(publish::follow(s, count)));
            let (n, took, lat) =
                publish::js_latency(&js, "benchlat.x", size, count, extra, shape).await?;
            if let Some(follower) = follower {
                follower.await??;
            }
            outcome(&format!("jetstream latency @{extra}/s"), size, n, took, lat)
        }
        other => bail!("unknown scenario {other:?}"),
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
