//! The acked-publish scenarios: `publish` (closed loop, pipelined),
//! `pipeline` (the same through no plugin, a pass-through stage and the
//! example order pipeline) and `latency` (open loop at a fixed rate).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use sluice_client::Message;

use super::load::{bar, publish_load, run_id};
use super::report::Outcome;
use super::target::Target;
use crate::cli::args::BenchArgs;

/// `publish`: `--count` messages of `--size` bytes to `topic` (a fresh
/// one by default), reported under `label`.
pub async fn publish(
    args: &BenchArgs,
    target: &Target,
    label: &str,
    topic: Option<String>,
) -> anyhow::Result<Outcome> {
    let topic = topic.unwrap_or_else(|| format!("bench.publish.{}", run_id()));
    let body = Bytes::from(vec![b'x'; args.size]);
    let make = Arc::new(move |_: u64| Message::new(topic.clone(), body.clone()));
    let (n, took, latencies) = publish_load(args, target, label, make).await?;
    Ok(Outcome::new(label, args.size, n, took).latencies(latencies))
}

/// `pipeline`: one row per variant (none, pass-through, order pipeline).
pub async fn pipeline(args: &BenchArgs, target: &Target) -> anyhow::Result<Vec<Outcome>> {
    if !target.pipelines {
        bail!("the pipeline scenario needs --embedded");
    }
    let id = run_id();
    let mut rows = vec![
        publish(
            args,
            target,
            "pipeline none",
            Some(format!("bench.plain.{id}")),
        )
        .await?,
        publish(
            args,
            target,
            "pipeline pass-through",
            Some(format!("bench.pipeline.pass.{id}")),
        )
        .await?,
    ];
    // A valid order of about --size bytes, routed to bench.orders.eu.
    let filler = args.size.saturating_sub(120);
    let order = Bytes::from(format!(
        r#"{{"id":"o-1","region":"eu","total":42.5,"customer":{{"email":"ann@example.com","phone":"+44 20 7946 0000"}},"note":"{}"}}"#,
        "n".repeat(filler)
    ));
    let topic = format!("bench.pipeline.orders.{id}");
    let make =
        Arc::new(move |_: u64| Message::new(topic.clone(), order.clone()).header("region", "eu"));
    let (n, took, latencies) = publish_load(args, target, "pipeline orders", make).await?;
    rows.push(Outcome::new("pipeline orders (4 stages)", args.size, n, took).latencies(latencies));
    Ok(rows)
}

/// `latency`: one message at a time at `--rate`, ack round trips.
pub async fn latency(args: &BenchArgs, target: &Target) -> anyhow::Result<Outcome> {
    let topic = format!("bench.latency.{}", run_id());
    let client = target.client().await?;
    let count = args
        .count
        .min(args.rate.saturating_mul(args.max_time.as_secs().max(1)));
    let progress = bar(count, "latency");
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let body = Bytes::from(vec![b'x'; args.size]);
    let start = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut latencies = Vec::with_capacity(count as usize);
    let mut sent = 0u64;
    while sent < count || !in_flight.is_empty() {
        // Open loop: message i is due at start + i * interval, whatever the
        // acks do (a slow ack never delays later sends); its latency counts
        // from when it was sent (the timer's own lateness is the client's).
        let due = start + interval.mul_f64(sent as f64);
        tokio::select! {
            () = tokio::time::sleep_until(due.into()), if sent < count => {
                let client = client.clone();
                let message = Message::new(topic.clone(), body.clone());
                let sent_at = Instant::now();
                in_flight.push(async move {
                    let result = client.publish_message(message).await;
                    (result, sent_at.elapsed())
                });
                sent += 1;
            }
            Some((result, took)) = in_flight.next(), if !in_flight.is_empty() => {
                result.context("publish failed")?;
                latencies.push(took.as_micros() as u64);
                progress.inc(1);
            }
        }
    }
    progress.finish_and_clear();
    let took = start.elapsed();
    client.close().await;
    let label = format!("latency @{}/s", args.rate);
    Ok(Outcome::new(&label, args.size, latencies.len() as u64, took).latencies(latencies))
}
