//! `js-consume`: a durable pull consumer with explicit acks, shared by
//! WORKERS tasks, fetching batches of 256 over a preloaded stream (the
//! counterpart of `sluice bench queue`: 256 unacked messages per worker).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_nats::jetstream::{self, consumer::PullConsumer};
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::window::Span;

/// Unacked messages each worker may hold (as `sluice bench queue`).
const WORKER_IN_FLIGHT: usize = 256;

/// A worker that gets nothing for this long once messages flowed stops
/// (the rest went to others).
const IDLE: Duration = Duration::from_secs(2);

/// How long the first message may take: a new replicated consumer elects
/// its leader first.
const FIRST_MESSAGE: Duration = Duration::from_secs(15);

/// Counted (no window), the workers stop only when done or idle.
const FOREVER: Duration = Duration::from_secs(86_400 * 365);

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

/// `workers` workers ack the `loaded` messages of `stream` over `span`
/// (timed: until the window closes), each ack added to `acked`; when the
/// last ack came.
pub async fn js_consume(
    stream: &jetstream::stream::Stream,
    loaded: u64,
    workers: u64,
    span: Span,
    acked: Arc<AtomicU64>,
) -> anyhow::Result<Instant> {
    let consumer = consumer(stream, workers).await?;
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let stop = span.phases().map(|p| p.close);
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
            let closed = tokio::time::sleep_until(stop.unwrap_or(start + FOREVER).into());
            tokio::pin!(closed);
            let mut idle = FIRST_MESSAGE;
            while acked.load(Ordering::Relaxed) < loaded {
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
                    () = &mut closed => break,
                }
            }
            // Counted, every ack in flight belongs to the figure; timed, the
            // window has closed and what is left does not count.
            if stop.is_none() {
                while let Some(r) = acks.next().await {
                    r.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
                    record();
                }
            }
            anyhow::Ok(())
        }));
    }
    while let Some(task) = tasks.next().await {
        task??;
    }
    Ok(start + Duration::from_nanos(last.load(Ordering::Relaxed)))
}
