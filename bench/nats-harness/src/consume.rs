//! `js-consume`: a durable pull consumer with explicit acks, shared by
//! WORKERS tasks, over a preloaded stream (the counterpart of `sluice
//! bench queue`: 256 unacked messages per worker).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_nats::jetstream::{self, consumer::PullConsumer};
use futures_util::stream::{FuturesUnordered, StreamExt};

/// Unacked messages each worker may hold (as `sluice bench queue`).
const WORKER_IN_FLIGHT: usize = 256;

/// A worker that gets nothing for this long once messages flowed stops
/// (the rest went to others).
const IDLE: Duration = Duration::from_secs(2);

/// How long the first message may take: a new replicated consumer elects
/// its leader first.
const FIRST_MESSAGE: Duration = Duration::from_secs(15);

/// The durable consumer `workers` on `stream`, once it has a leader.
async fn consumer(
    stream: &jetstream::stream::Stream,
    workers: u64,
) -> anyhow::Result<PullConsumer> {
    let mut consumer: PullConsumer = stream
        .get_or_create_consumer(
            "workers",
            jetstream::consumer::pull::Config {
                durable_name: Some("workers".into()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                max_ack_pending: (WORKER_IN_FLIGHT as u64 * workers) as i64,
                ..Default::default()
            },
        )
        .await
        .context("creating the consumer")?;
    let deadline = Instant::now() + FIRST_MESSAGE;
    loop {
        let info = consumer
            .info()
            .await
            .context("reading the consumer's info")?;
        let leader = info.cluster.as_ref().and_then(|c| c.leader.as_deref());
        if info.cluster.as_ref().is_none_or(|c| c.name.is_none())
            || leader.is_some_and(|l| !l.is_empty())
        {
            return Ok(consumer);
        }
        if Instant::now() > deadline {
            bail!("the consumer has no leader after {FIRST_MESSAGE:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `workers` workers ack `count` messages of `stream`; messages acked and
/// the time from the start to the last ack.
pub async fn js_consume(
    stream: &jetstream::stream::Stream,
    count: u64,
    workers: u64,
) -> anyhow::Result<(u64, Duration)> {
    let consumer = consumer(stream, workers).await?;
    let acked = Arc::new(AtomicU64::new(0));
    let last = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = FuturesUnordered::new();
    for _ in 0..workers {
        let consumer = consumer.clone();
        let (acked, last) = (acked.clone(), last.clone());
        tasks.push(tokio::spawn(async move {
            let mut messages = consumer
                .stream()
                .max_messages_per_batch(WORKER_IN_FLIGHT)
                .messages()
                .await?;
            let mut acks = FuturesUnordered::new();
            let record = || {
                acked.fetch_add(1, Ordering::Relaxed);
                last.fetch_max(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
            };
            let mut idle = FIRST_MESSAGE;
            while acked.load(Ordering::Relaxed) < count {
                tokio::select! {
                    m = messages.next() => match m {
                        Some(Ok(m)) => {
                            idle = IDLE;
                            acks.push(async move { m.ack().await });
                        }
                        // Missed heartbeats and the like: the stream goes on.
                        Some(Err(e)) => eprintln!("nats-harness: pull consumer: {e}"),
                        None => break,
                    },
                    Some(r) = acks.next(), if !acks.is_empty() => {
                        r.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
                        record();
                    }
                    () = tokio::time::sleep(idle) => break,
                }
            }
            while let Some(r) = acks.next().await {
                r.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
                record();
            }
            anyhow::Ok(())
        }));
    }
    while let Some(task) = tasks.next().await {
        task??;
    }
    let took = Duration::from_nanos(last.load(Ordering::Relaxed));
    Ok((acked.load(Ordering::Relaxed), took))
}
