//! The pipelined publisher every throughput scenario shares: producers
//! (`--producers`, each its own connection) keep `--window` requests of
//! `--batch` messages in flight until the [`Span`] ends (`--count`
//! messages, or the window closing), bounded by `--max-time`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use futures_util::stream::{FuturesUnordered, StreamExt};
use sluice_client::{Message, MessageOutcome};

use super::target::Target;
use super::window::Span;
use crate::cli::args::BenchArgs;
use crate::cli::display::{describe, progress_bar};

/// Makes message `i` (0-based) of a load.
pub type MakeMessage = Arc<dyn Fn(u64) -> Message + Send + Sync>;

/// The span `--count`, `--duration` and `--warmup` ask for, its warm-up
/// starting now.
pub fn span(args: &BenchArgs) -> Span {
    Span::new(
        args.count,
        args.duration.map(|window| (args.warmup, window)),
    )
}

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

/// How a load publishes: the requests' shape and where it counts acks.
pub struct Load {
    /// Messages per request.
    pub batch: u64,
    /// Requests in flight per producer.
    pub window: usize,
    /// Acked messages are added here (read by [`super::window::measure`]).
    pub acked: Arc<AtomicU64>,
}

impl Load {
    /// The shape the flags ask for, counting into a new counter.
    pub fn from_args(args: &BenchArgs) -> Load {
        Load {
            batch: args.batch as u64,
            window: args.window,
            acked: Arc::default(),
        }
    }

    /// What the counter holds now.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }
}

/// What a load did.
pub struct Loaded {
    /// Per-request ack latencies (µs) of the requests `span` samples.
    pub latencies: Vec<u64>,
    /// When the last ack came.
    pub last_ack: Instant,
}

/// Publishes messages made by `make` from `--producers` connections over
/// `span`, adding each acked request's messages to `load.acked`.
pub async fn publish_load(
    args: &BenchArgs,
    target: &Target,
    label: &str,
    make: MakeMessage,
    span: Span,
    load: &Load,
) -> anyhow::Result<Loaded> {
    let limit = span.limit();
    let progress = match span {
        Span::Count(count) => bar(count, label),
        Span::Timed { .. } => indicatif::ProgressBar::hidden(),
    };
    let deadline = Instant::now() + args.max_time;
    let mut clients = Vec::new();
    for _ in 0..args.producers {
        clients.push(target.client().await?);
    }
    // Message numbers are handed out a request at a time, so that however
    // the load ends, the producers share it.
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let last_ack = Arc::new(AtomicU64::new(0));
    let mut tasks = FuturesUnordered::new();
    for client in clients {
        let (batch, window) = (load.batch, load.window);
        let (make, next) = (make.clone(), next.clone());
        let (acked, last_ack) = (load.acked.clone(), last_ack.clone());
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut in_flight = FuturesUnordered::new();
            let mut exhausted = false;
            loop {
                while !exhausted && in_flight.len() < window {
                    let now = Instant::now();
                    if !span.sending(now) || now >= deadline {
                        break;
                    }
                    let first = next.fetch_add(batch, Ordering::Relaxed);
                    if first >= limit {
                        exhausted = true;
                        break;
                    }
                    let end = first.saturating_add(batch).min(limit);
                    let messages: Vec<Message> = (first..end).map(|i| make(i)).collect();
                    let client = client.clone();
                    in_flight.push(async move {
                        let ack = client.publish_batch(messages).await;
                        (ack, now, now.elapsed())
                    });
                }
                let Some((ack, sent, took)) = in_flight.next().await else {
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
                last_ack.fetch_max(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
                progress.inc(n);
                if span.samples(sent) {
                    latencies.push(took.as_micros() as u64);
                }
            }
            client.close().await;
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    while let Some(joined) = tasks.next().await {
        latencies.extend(joined??);
    }
    progress.finish_and_clear();
    let last_ack = start + std::time::Duration::from_nanos(last_ack.load(Ordering::Relaxed));
    Ok(Loaded {
        latencies,
        last_ack,
    })
}
