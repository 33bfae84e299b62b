//! The `queue` scenario: a topic preloaded with `--count` messages, then a
//! consumer group of `--workers` members acking them as fast as they come.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use sluice_client::{ConsumeOptions, Message, StartPosition};

use super::load::{bar, publish_load, run_id};
use super::report::Outcome;
use super::target::Target;
use crate::cli::args::BenchArgs;

/// Unacked deliveries each worker may hold.
const WORKER_IN_FLIGHT: u32 = 256;

/// A worker that gets nothing for this long stops (the rest went to others).
const IDLE: Duration = Duration::from_secs(2);

/// `queue`: time from the first delivery to the last ack.
pub async fn queue(args: &BenchArgs, target: &Target) -> anyhow::Result<Outcome> {
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
                    .max_in_flight(WORKER_IN_FLIGHT),
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
                    () = tokio::time::sleep(IDLE) => break,
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
