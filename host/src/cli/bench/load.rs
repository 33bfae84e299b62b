//! The pipelined publisher every throughput scenario shares: `--count`
//! messages from `--producers` connections, `--window` batches of
//! `--batch` in flight each, bounded by `--max-time`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::stream::{FuturesUnordered, StreamExt};
use sluice_client::{Message, MessageOutcome};

use super::target::Target;
use crate::cli::args::BenchArgs;
use crate::cli::display::{describe, progress_bar};

/// Makes message `i` (0-based) of a load.
pub type MakeMessage = Arc<dyn Fn(u64) -> Message + Send + Sync>;

/// A short random suffix so runs against one broker do not share topics.
pub fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{:x}{:x}", std::process::id(), nanos)
}

/// A progress bar labelled with the scenario (on a terminal only).
pub fn bar(total: u64, label: &str) -> indicatif::ProgressBar {
    progress_bar(
        total,
        &format!("{label:>22} {{bar:30}} {{pos}}/{{len}} {{per_sec}} eta {{eta}}"),
    )
}

/// Publishes `count` messages made by `make` from `producers` connections;
/// returns (messages acked, time, per-request ack latencies in µs).
pub async fn publish_load(
    args: &BenchArgs,
    target: &Target,
    label: &str,
    make: MakeMessage,
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
                    .find(|o| !matches!(o, MessageOutcome::Stored(_)))
                {
                    bail!("a bench message was not stored: {}", describe(other));
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
