//! The acked-publish scenarios: `publish` (closed loop, pipelined),
//! `pipeline` (the same through no plugin, a pass-through stage and the
//! example order pipeline) and `latency` (open loop at a fixed rate).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use sluice_client::Message;

use super::load::{bar, publish_load, run_id, span, Load, MakeMessage};
use super::report::Outcome;
use super::target::Target;
use super::window::{measure, Span, Steady};
use crate::cli::args::BenchArgs;

/// `publish`: messages of `--size` bytes to a fresh topic.
pub async fn publish(args: &BenchArgs, target: &Target) -> anyhow::Result<Outcome> {
    let topic = format!("bench.publish.{}", run_id());
    let body = Bytes::from(vec![b'x'; args.size]);
    let t = topic.clone();
    let make = Arc::new(move |_: u64| Message::new(t.clone(), body.clone()));
    let row = publish_measured(args, target, "publish", make).await?;
    target.clean_up(args, &topic).await;
    Ok(row)
}

/// Publishes what `make` makes over the span the flags ask for and
/// measures the acks, reported under `label`.
pub(super) async fn publish_measured(
    args: &BenchArgs,
    target: &Target,
    label: &str,
    make: MakeMessage,
) -> anyhow::Result<Outcome> {
    let load = Load::from_args(args);
    let span = span(args);
    let work = async {
        let loaded = publish_load(args, target, label, make, span, &load).await?;
        Ok((loaded.latencies, loaded.last_ack))
    };
    let (latencies, steady) = measure(span, || load.acked(), work).await?;
    Ok(Outcome::measured(label, args.size, steady).latencies(latencies))
}

/// `pipeline`: one row per variant (none, pass-through, order pipeline).
pub async fn pipeline(args: &BenchArgs, target: &Target) -> anyhow::Result<Vec<Outcome>> {
    if !target.pipelines {
        bail!("the pipeline scenario needs --embedded");
    }
    let id = run_id();
    let body = Bytes::from(vec![b'x'; args.size]);
    let to = |topic: String| -> MakeMessage {
        let body = body.clone();
        Arc::new(move |_: u64| Message::new(topic.clone(), body.clone()))
    };
    let (plain, passed) = (
        format!("bench.plain.{id}"),
        format!("bench.pipeline.pass.{id}"),
    );
    let (none, pass) = (to(plain.clone()), to(passed.clone()));
    // A valid order of about --size bytes, routed to bench.orders.eu.
    let filler = args.size.saturating_sub(120);
    let order = Bytes::from(format!(
        r#"{{"id":"o-1","region":"eu","total":42.5,"customer":{{"email":"ann@example.com","phone":"+44 20 7946 0000"}},"note":"{}"}}"#,
        "n".repeat(filler)
    ));
    let ordered = format!("bench.pipeline.orders.{id}");
    let topic = ordered.clone();
    let orders: MakeMessage =
        Arc::new(move |_: u64| Message::new(topic.clone(), order.clone()).header("region", "eu"));
    // Each variant's topics go before the next runs, so every variant
    // starts from the same disk and page cache.
    let none = publish_measured(args, target, "pipeline none", none).await?;
    target.clean_up(args, &plain).await;
    let pass = publish_measured(args, target, "pipeline pass-through", pass).await?;
    target.clean_up(args, &passed).await;
    let orders = publish_measured(args, target, "pipeline orders (4 stages)", orders).await?;
    // The order pipeline stores the orders where its router sends them.
    target.clean_up(args, ORDERS_ROUTED_TO).await;
    Ok(vec![none, pass, orders])
}

/// Where the bench's order pipeline routes the orders it publishes
/// (`region` = `eu`; see `target.rs`).
const ORDERS_ROUTED_TO: &str = "bench.orders.eu";

/// `latency`: one message at a time at `--rate`, ack round trips. Timed,
/// it sends through the warm-up and the window and keeps the round trips
/// of what it sent inside the window.
pub async fn latency(args: &BenchArgs, target: &Target) -> anyhow::Result<Outcome> {
    let topic = format!("bench.latency.{}", run_id());
    let client = target.client().await?;
    let span = span(args);
    let count = match span {
        Span::Count(count) => count.min(args.rate.saturating_mul(args.max_time.as_secs().max(1))),
        Span::Timed { phases, limit } => {
            let total = phases.close.saturating_duration_since(Instant::now());
            let due = (total.as_secs_f64() * args.rate as f64).ceil() as u64;
            due.min(limit.unwrap_or(u64::MAX))
        }
    };
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
                    (result, sent_at, sent_at.elapsed())
                });
                sent += 1;
            }
            Some((result, sent_at, took)) = in_flight.next(), if !in_flight.is_empty() => {
                result.context("publish failed")?;
                if span.samples(sent_at) {
                    latencies.push(took.as_micros() as u64);
                }
                progress.inc(1);
            }
        }
    }
    progress.finish_and_clear();
    let took = match span.phases() {
        Some(phases) => phases.window(),
        None => start.elapsed(),
    };
    client.close().await;
    target.clean_up(args, &topic).await;
    let steady = Steady {
        messages: latencies.len() as u64,
        took,
        planned: span.phases().map(|p| p.window()),
        short: false,
    };
    let label = format!("latency @{}/s", args.rate);
    Ok(Outcome::measured(&label, args.size, steady).latencies(latencies))
}
