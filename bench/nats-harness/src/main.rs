//! NATS side of `cargo xtask bench-vs-nats`.
//!
//! ```text
//! nats-harness SERVERS SCENARIO SIZE COUNT [WORKERS|RATE] [--replicas N] [--in-flight N]
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
//! - `js-consume`: preload a stream, then WORKERS pull consumers on one
//!   durable consumer, each message acked.
//! - `js-latency`: JetStream publish at RATE per second, open loop, ack
//!   round trip percentiles.
//!
//! The JetStream scenarios create their stream with `--replicas` copies
//! (default 1; 3 on a 3-server cluster is what sluice's cluster mode uses).
//!
//! Prints one JSON object in `sluice bench --json`'s schema.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_nats::jetstream;
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};

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
    in_flight: usize,
}

const USAGE: &str =
    "usage: nats-harness SERVERS SCENARIO SIZE COUNT [WORKERS|RATE] [--replicas N] [--in-flight N]";

fn parse_args(raw: Vec<String>) -> anyhow::Result<Args> {
    let mut positional = Vec::new();
    let (mut replicas, mut in_flight) = (1, DEFAULT_IN_FLIGHT);
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
            "--in-flight" => in_flight = value("--in-flight")?.max(1),
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
        in_flight,
    })
}

/// A new file stream `name` (any old one deleted first) on subjects
/// `name.>`, once it has a leader: in a cluster the stream exists before
/// its replicas have elected one, and a publish meanwhile finds no stream.
async fn stream(
    js: &jetstream::Context,
    name: &str,
    replicas: usize,
) -> anyhow::Result<jetstream::stream::Stream> {
    let _ = js.delete_stream(name).await;
    let mut stream = js
        .create_stream(jetstream::stream::Config {
            name: name.to_owned(),
            subjects: vec![format!("{name}.>")],
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas,
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

async fn js_publish(
    js: &jetstream::Context,
    subject: &str,
    size: usize,
    count: u64,
    window: usize,
) -> anyhow::Result<(u64, Duration, Vec<u64>)> {
    let body = Bytes::from(vec![b'x'; size]);
    let mut in_flight = FuturesUnordered::new();
    let mut latencies = Vec::with_capacity(count as usize);
    let start = Instant::now();
    let mut sent = 0;
    let mut acked = 0;
    while acked < count {
        while sent < count && in_flight.len() < window {
            let sent_at = Instant::now();
            let ack = js.publish(subject.to_owned(), body.clone()).await?;
            in_flight.push(async move { (ack.await, sent_at.elapsed()) });
            sent += 1;
        }
        let Some((ack, took)) = in_flight.next().await else {
            break;
        };
        ack.context("JetStream publish failed")?;
        latencies.push(took.as_micros() as u64);
        acked += 1;
    }
    Ok((acked, start.elapsed(), latencies))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args(std::env::args().skip(1).collect())?;
    let (scenario, size, count, extra) =
        (args.scenario.as_str(), args.size, args.count, args.extra);
    let (replicas, window) = (args.replicas, args.in_flight);
    let client = async_nats::connect(args.servers.as_slice())
        .await
        .context("connecting to NATS")?;
    let result = match scenario {
        "core-pubsub" => {
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
                                if got % 64 == 0 || got == count {
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
            outcome("nats core pubsub 1:1", size, got, last - start, Vec::new())
        }
        "js-publish" => {
            let js = jetstream::new(client.clone());
            stream(&js, "benchpub", replicas).await?;
            let (n, took, lat) = js_publish(&js, "benchpub.x", size, count, window).await?;
            outcome("jetstream publish", size, n, took, lat)
        }
        "js-consume" => {
            let js = jetstream::new(client.clone());
            let s = stream(&js, "benchq", replicas).await?;
            js_publish(&js, "benchq.x", size, count, window).await?;
            let consumer: jetstream::consumer::PullConsumer = s
                .get_or_create_consumer(
                    "workers",
                    jetstream::consumer::pull::Config {
                        durable_name: Some("workers".into()),
                        ack_policy: jetstream::consumer::AckPolicy::Explicit,
                        max_ack_pending: 256 * extra as i64,
                        ..Default::default()
                    },
                )
                .await?;
            let acked = Arc::new(AtomicU64::new(0));
            let last = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let mut workers = FuturesUnordered::new();
            for _ in 0..extra {
                let consumer = consumer.clone();
                let (acked, last) = (acked.clone(), last.clone());
                workers.push(tokio::spawn(async move {
                    let mut messages = consumer.stream().max_messages_per_batch(256).messages().await?;
                    let mut acks = FuturesUnordered::new();
                    while acked.load(Ordering::Relaxed) < count {
                        tokio::select! {
                            m = messages.next() => match m {
                                Some(Ok(m)) => acks.push(async move { m.ack().await }),
                                _ => break,
                            },
                            Some(r) = acks.next(), if !acks.is_empty() => {
                                r.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
                                acked.fetch_add(1, Ordering::Relaxed);
                                last.fetch_max(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
                            }
                            () = tokio::time::sleep(Duration::from_secs(2)) => break,
                        }
                    }
                    while let Some(r) = acks.next().await {
                        r.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
                        acked.fetch_add(1, Ordering::Relaxed);
                        last.fetch_max(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    }
                    anyhow::Ok(())
                }));
            }
            while let Some(w) = workers.next().await {
                w??;
            }
            let took = Duration::from_nanos(last.load(Ordering::Relaxed));
            outcome(
                &format!("jetstream pull consume {extra} workers"),
                size,
                acked.load(Ordering::Relaxed),
                took,
                Vec::new(),
            )
        }
        "js-latency" => {
            let js = jetstream::new(client.clone());
            stream(&js, "benchlat", replicas).await?;
            let body = Bytes::from(vec![b'x'; size]);
            let interval = Duration::from_secs_f64(1.0 / extra as f64);
            let start = Instant::now();
            let mut in_flight = FuturesUnordered::new();
            let mut lat = Vec::with_capacity(count as usize);
            let mut sent = 0u64;
            while sent < count || !in_flight.is_empty() {
                let due = start + interval.mul_f64(sent as f64);
                tokio::select! {
                    () = tokio::time::sleep_until(due.into()), if sent < count => {
                        let js = js.clone();
                        let body = body.clone();
                        let sent_at = Instant::now();
                        in_flight.push(async move {
                            let r = match js.publish("benchlat.x", body).await {
                                Ok(ack) => ack.await.map(|_| ()).map_err(anyhow::Error::from),
                                Err(e) => Err(anyhow::Error::from(e)),
                            };
                            (r, sent_at.elapsed())
                        });
                        sent += 1;
                    }
                    Some((r, took)) = in_flight.next(), if !in_flight.is_empty() => {
                        r?;
                        lat.push(took.as_micros() as u64);
                    }
                }
            }
            outcome(
                &format!("jetstream latency @{extra}/s"),
                size,
                lat.len() as u64,
                start.elapsed(),
                lat,
            )
        }
        other => bail!("unknown scenario {other:?}"),
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
