//! The JetStream publishers: `js-publish` (one message per publish, acks
//! awaited within a window), `js-batch` (atomic batches, one ack per
//! batch; COUNT only), `js-latency` (open loop at a fixed rate), and
//! `--follow`: an ordered consumer reading the stream while it is written
//! (COUNT only).
//!
//! `--msg-id` and `--follow` add what sluice's cluster mode does on top of
//! a plain JetStream publish (a `Nats-Msg-Id` per message; every node
//! following every stream to feed its subscribers), so that each cost can
//! be measured on its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_nats::jetstream::{self, consumer::pull::OrderedConfig, message::PublishMessage};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::window::Span;

/// How the publishers publish.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Messages awaiting their ack at once.
    pub window: usize,
    /// Messages per atomic batch (`js-batch`).
    pub batch: usize,
    /// A unique `Nats-Msg-Id` on every message (JetStream de-duplication).
    pub msg_id: bool,
    /// `Nats-Expected-Stream` on every message (`js-publish`).
    pub expect_stream: bool,
}

/// A prefix that makes this run's ids unique.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}")
}

/// Message `n` of a run: `body`, with the headers `shape` asks for.
fn publish_message(body: Bytes, subject: &str, shape: Shape, run: &str, n: u64) -> PublishMessage {
    let mut message = PublishMessage::build().payload(body);
    if shape.msg_id {
        message = message.message_id(format!("{run}-{n}"));
    }
    if shape.expect_stream {
        let stream = subject.split('.').next().unwrap_or(subject);
        message = message.expected_stream(stream);
    }
    message
}

/// What a publisher did: per-ack latencies (µs) of the messages its span
/// samples, and when the last ack came.
pub struct Loaded {
    pub latencies: Vec<u64>,
    pub last_ack: Instant,
}

/// Messages of `size` bytes to `subject` over `span`, one JetStream
/// publish each, at most `shape.window` awaiting their ack; each ack is
/// added to `acked`.
pub async fn js_publish(
    js: &jetstream::Context,
    subject: &str,
    size: usize,
    span: Span,
    shape: Shape,
    acked: &AtomicU64,
) -> anyhow::Result<Loaded> {
    let body = Bytes::from(vec![b'x'; size]);
    let run = run_id();
    let limit = span.limit();
    let mut in_flight = FuturesUnordered::new();
    let mut latencies = Vec::new();
    let mut last_ack = Instant::now();
    let mut sent = 0;
    loop {
        while sent < limit && in_flight.len() < shape.window {
            let sent_at = Instant::now();
            if !span.sending(sent_at) {
                break;
            }
            let message = publish_message(body.clone(), subject, shape, &run, sent);
            let ack = js.send_publish(subject.to_owned(), message).await?;
            in_flight.push(async move { (ack.await, sent_at, sent_at.elapsed()) });
            sent += 1;
        }
        let Some((ack, sent_at, took)) = in_flight.next().await else {
            break;
        };
        ack.context("JetStream publish failed")?;
        acked.fetch_add(1, Ordering::Relaxed);
        last_ack = Instant::now();
        if span.samples(sent_at) {
            latencies.push(took.as_micros() as u64);
        }
    }
    Ok(Loaded {
        latencies,
        last_ack,
    })
}

/// `count` messages in atomic batches of `shape.batch` (headers
/// `Nats-Batch-Id`, `Nats-Batch-Sequence`, `Nats-Batch-Commit` on the last,
/// which alone is a request: one ack per batch), `shape.window / batch`
/// batches in flight. The stream needs `allow_atomic`.
pub async fn js_batch(
    client: &async_nats::Client,
    subject: &str,
    size: usize,
    count: u64,
    shape: Shape,
) -> anyhow::Result<(u64, Duration, Vec<u64>)> {
    let body = Bytes::from(vec![b'x'; size]);
    let run = run_id();
    let batch = shape.batch.clamp(1, 1000) as u64;
    let batches_in_flight = (shape.window / batch as usize).max(1);
    let mut in_flight = FuturesUnordered::new();
    let mut latencies = Vec::new();
    let start = Instant::now();
    let (mut next, mut acked, mut number) = (0, 0, 0);
    loop {
        while next < count && in_flight.len() < batches_in_flight {
            let len = (count - next).min(batch);
            next += len;
            number += 1;
            let id = format!("{run}-{number}");
            let (client, body, subject) = (client.clone(), body.clone(), subject.to_owned());
            in_flight.push(async move {
                let sent_at = Instant::now();
                for seq in 1..=len {
                    let mut headers = HeaderMap::new();
                    headers.insert("Nats-Batch-Id", id.as_str());
                    headers.insert("Nats-Batch-Sequence", seq.to_string().as_str());
                    if shape.msg_id {
                        headers.insert("Nats-Msg-Id", format!("{id}-{seq}").as_str());
                    }
                    if seq < len {
                        client
                            .publish_with_headers(subject.clone(), headers, body.clone())
                            .await?;
                        continue;
                    }
                    headers.insert("Nats-Batch-Commit", "1");
                    let reply = client
                        .request_with_headers(subject.clone(), headers, body.clone())
                        .await
                        .context("committing a batch")?;
                    let ack: serde_json::Value = serde_json::from_slice(&reply.payload)?;
                    if ack.get("error").is_some() || ack["count"] != len {
                        bail!("batch {id} refused: {ack}");
                    }
                }
                anyhow::Ok((len, sent_at.elapsed()))
            });
        }
        let Some(done) = in_flight.next().await else {
            break;
        };
        let (len, took) = done?;
        acked += len;
        latencies.push(took.as_micros() as u64);
    }
    Ok((acked, start.elapsed(), latencies))
}

/// Reads `stream` from its start with an ordered consumer (as each sluice
/// node follows each topic) until `count` messages arrived; how many did.
pub async fn follow(stream: jetstream::stream::Stream, count: u64) -> anyhow::Result<u64> {
    let consumer = stream
        .create_consumer(OrderedConfig::default())
        .await
        .context("creating the ordered consumer")?;
    let mut messages = consumer.messages().await?.ready_chunks(1024);
    let mut seen = 0;
    while seen < count {
        match tokio::time::timeout(Duration::from_secs(10), messages.next()).await {
            Ok(Some(chunk)) => seen += chunk.len() as u64,
            Ok(None) | Err(_) => break,
        }
    }
    Ok(seen)
}

/// Messages at `rate` per second over `span`, each published when due
/// whatever the acks do (open loop); latency from send to ack, of what
/// `span` samples. `shape.msg_id` and `shape.expect_stream` as for
/// [`js_publish`].
pub async fn js_latency(
    js: &jetstream::Context,
    subject: &str,
    size: usize,
    span: Span,
    rate: u64,
    shape: Shape,
) -> anyhow::Result<Vec<u64>> {
    let body = Bytes::from(vec![b'x'; size]);
    let run = run_id();
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let count = match span.phases() {
        // Through the warm-up and the window.
        Some(phases) => {
            let total = phases.close.saturating_duration_since(Instant::now());
            let due = (total.as_secs_f64() * rate as f64).ceil() as u64;
            due.min(span.limit())
        }
        None => span.limit(),
    };
    let start = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut latencies = Vec::with_capacity(count as usize);
    let mut sent = 0u64;
    while sent < count || !in_flight.is_empty() {
        let due = start + interval.mul_f64(sent as f64);
        tokio::select! {
            () = tokio::time::sleep_until(due.into()), if sent < count => {
                let message = publish_message(body.clone(), subject, shape, &run, sent);
                let (js, subject) = (js.clone(), subject.to_owned());
                let sent_at = Instant::now();
                in_flight.push(async move {
                    let result = match js.send_publish(subject, message).await {
                        Ok(ack) => ack.await.map(|_| ()).map_err(anyhow::Error::from),
                        Err(e) => Err(anyhow::Error::from(e)),
                    };
                    (result, sent_at, sent_at.elapsed())
                });
                sent += 1;
            }
            Some((result, sent_at, took)) = in_flight.next(), if !in_flight.is_empty() => {
                result?;
                if span.samples(sent_at) {
                    latencies.push(took.as_micros() as u64);
                }
            }
        }
    }
    Ok(latencies)
}
