//! The `queue` scenario: a topic preloaded with messages, then a consumer
//! group of `--workers` members acking them as fast as they come.
//!
//! With `--count` the topic holds that many. Timed (`--duration` without
//! `--count`) it is loaded for [`PRELOAD_FACTOR`] times the warm-up and
//! the window, so that the window is full unless the group acks faster
//! than that factor times the publish rate; a topic that runs dry cuts the
//! window short, and the row says so (`short_window`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use sluice_client::{ConsumeOptions, Message, StartPosition};

use super::load::{bar, publish_load, run_id, span, Load};
use super::report::Outcome;
use super::target::Target;
use super::window::{measure, Phases, Span};
use crate::cli::args::BenchArgs;

/// Unacked deliveries each worker may hold.
const WORKER_IN_FLIGHT: u32 = 256;

/// A worker that gets nothing for this long stops (the rest went to others).
const IDLE: Duration = Duration::from_secs(2);

/// Timed without `--count`: the topic is loaded for this many times the
/// warm-up and the window.
const PRELOAD_FACTOR: u32 = 2;

/// Messages per request while preloading (capped by bytes, below): the
/// load is not measured, so it goes as fast as it can.
const PRELOAD_BATCH: u64 = 1_000;

/// Payload bytes per preload request at most, well under the default
/// frame limit.
const PRELOAD_REQUEST_BYTES: u64 = 512 * 1024;

/// How the topic is loaded before the group starts: its span and the
/// requests' shape.
fn preload(args: &BenchArgs) -> (Span, Load) {
    let mut load = Load::from_args(args);
    let span = match (args.duration, args.count) {
        (Some(window), None) => {
            let batch = (PRELOAD_REQUEST_BYTES / args.size.max(1) as u64).min(PRELOAD_BATCH);
            load.batch = load.batch.max(batch);
            let time = (args.warmup + window) * PRELOAD_FACTOR;
            Span::Timed {
                phases: Phases::starting_now(Duration::ZERO, time),
                limit: None,
            }
        }
        (_, count) => Span::Count(count.unwrap_or(super::window::DEFAULT_COUNT)),
    };
    (span, load)
}

/// `queue`: acks counted from the first delivery to the last ack, or
/// timed, inside the window.
pub async fn queue(args: &BenchArgs, target: &Target) -> anyhow::Result<Outcome> {
    let id = run_id();
    let topic = format!("bench.queue.{id}");
    let body = Bytes::from(vec![b'x'; args.size]);
    let t = topic.clone();
    let make = Arc::new(move |_: u64| Message::new(t.clone(), body.clone()));
    let (preload_span, preloading) = preload(args);
    publish_load(
        args,
        target,
        "queue (loading)",
        make,
        preload_span,
        &preloading,
    )
    .await?;
    let loaded = preloading.acked();
    let span = span(args);
    let progress = match span {
        Span::Count(_) => bar(loaded, "queue"),
        Span::Timed { .. } => indicatif::ProgressBar::hidden(),
    };
    let acked = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + args.max_time;
    let stop = span.phases().map_or(deadline, |p| p.close.min(deadline));
    let start = Instant::now();
    let last_ack = Arc::new(AtomicU64::new(0));
    let work = async {
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
            let (acked, last_ack) = (acked.clone(), last_ack.clone());
            let progress = progress.clone();
            workers.push(tokio::spawn(async move {
                let mut acks = FuturesUnordered::new();
                let record = || {
                    acked.fetch_add(1, Ordering::Relaxed);
                    progress.inc(1);
                    last_ack.fetch_max(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
                };
                let closed = tokio::time::sleep_until(stop.into());
                tokio::pin!(closed);
                while acked.load(Ordering::Relaxed) < loaded {
                    tokio::select! {
                        delivery = consumer.recv() => match delivery {
                            Some(Ok(d)) => acks.push(async move { d.ack().await }),
                            _ => break,
                        },
                        Some(result) = acks.next(), if !acks.is_empty() => {
                            result?;
                            record();
                        }
                        () = tokio::time::sleep(IDLE) => break,
                        () = &mut closed => break,
                    }
                }
                // Counted, every ack in flight belongs to the figure; timed,
                // the window has closed and what is left does not count.
                if span.phases().is_none() {
                    while let Some(result) = acks.next().await {
                        result?;
                        record();
                    }
                }
                drop(consumer);
                client.close().await;
                anyhow::Ok(())
            }));
        }
        while let Some(joined) = workers.next().await {
            joined??;
        }
        let last = start + Duration::from_nanos(last_ack.load(Ordering::Relaxed));
        Ok(((), last))
    };
    let ((), steady) = measure(span, || acked.load(Ordering::Relaxed), work).await?;
    progress.finish_and_clear();
    target.clean_up(args, &topic).await;
    let label = format!("queue {} workers", args.workers);
    Ok(Outcome::measured(&label, args.size, steady))
}
