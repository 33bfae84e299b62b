//! `sluice pub`: one message, N messages from a template (pipelined
//! batches), or one message per line of standard input.

use std::io::BufRead;
use std::time::Instant;

use anyhow::{bail, Context};
use futures_util::stream::{FuturesUnordered, StreamExt};
use sluice_client::{Client, Message, MessageOutcome};

use super::args::PubArgs;
use super::connect::connect;
use super::display::{describe, progress_bar};
use super::payload::{render, Payload};

/// Below this many messages a progress bar would only flicker.
const PROGRESS_FROM: u64 = 1000;

/// Builds message number `n` (1-based).
fn message(args: &PubArgs, payload: &Payload, n: u64) -> Message {
    let mut m = Message::new(args.topic.clone(), payload.render(n));
    if let Some(key) = &args.key {
        m = m.key(render(key, n));
    }
    for (name, value) in &args.headers {
        m = m.header(name.clone(), value.clone());
    }
    if let Some(id) = &args.id {
        m = m.id(render(id, n));
    }
    if let Some(delay) = args.delay {
        m = m.delay(delay);
    }
    if let Some(at) = &args.at {
        m = m.header(sluice_client::DELIVER_AT_HEADER, at.clone());
    }
    if let Some(ttl) = args.ttl {
        m = m.ttl(ttl);
    }
    m
}

/// The payload the flags ask for; `None`: one message per line of stdin.
fn payload(args: &PubArgs) -> anyhow::Result<Option<Payload>> {
    Ok(match (&args.message, &args.file, args.size) {
        (Some(text), _, size) => Some(Payload::template(text.clone(), size, args.count)?),
        (_, Some(file), _) => Some(Payload::Fixed(
            std::fs::read(file)
                .with_context(|| format!("failed to read {}", file.display()))?
                .into(),
        )),
        (_, _, Some(size)) => Some(Payload::filler(size)),
        _ => None,
    })
}

/// Runs `sluice pub`.
pub async fn run(args: PubArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.window == 0 {
        bail!("--batch and --window must be at least 1");
    }
    let payload = payload(&args)?;
    let client = connect(&args.client).await?;
    match payload {
        Some(payload) if args.count == 1 => {
            let ack = client
                .publish_batch(vec![message(&args, &payload, 1)])
                .await?;
            for outcome in &ack.outcomes {
                println!("{}", describe(outcome));
            }
            if let Some(MessageOutcome::Rejected(reason)) = ack.outcomes.first() {
                client.close().await;
                bail!("the broker rejected the message: {reason}");
            }
        }
        Some(payload) => publish_many(&client, &args, &payload).await?,
        None => publish_lines(&client, &args).await?,
    }
    client.close().await;
    Ok(())
}

async fn publish_many(client: &Client, args: &PubArgs, payload: &Payload) -> anyhow::Result<()> {
    let bar = if args.count < PROGRESS_FROM {
        indicatif::ProgressBar::hidden()
    } else {
        progress_bar(
            args.count,
            "{bar:40} {pos}/{len} messages, {per_sec}, eta {eta}",
        )
    };
    let start = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut next = 1u64;
    let mut acked = 0u64;
    let mut bytes = 0u64;
    let mut first_offset = None;
    let mut not_stored = 0u64;
    let mut last_offset = None;
    while acked < args.count {
        while next <= args.count && in_flight.len() < args.window {
            let end = (next + args.batch as u64 - 1).min(args.count);
            let batch: Vec<Message> = (next..=end).map(|n| message(args, payload, n)).collect();
            bytes += batch.iter().map(|m| m.payload().len() as u64).sum::<u64>();
            next = end + 1;
            let client = client.clone();
            in_flight.push(async move { client.publish_batch(batch).await });
        }
        let Some(result) = in_flight.next().await else {
            break;
        };
        let ack = result.context("publish failed")?;
        for outcome in &ack.outcomes {
            if let MessageOutcome::Stored(places) = outcome {
                let Some(place) = places.first() else {
                    continue;
                };
                first_offset =
                    Some(first_offset.map_or(place.offset, |f: u64| f.min(place.offset)));
                last_offset = Some(last_offset.map_or(place.offset, |l: u64| l.max(place.offset)));
            } else {
                not_stored += 1;
            }
        }
        acked += ack.outcomes.len() as u64;
        bar.set_position(acked);
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let offsets = match (first_offset, last_offset) {
        (Some(f), Some(l)) => format!(" (offsets {f}..={l})"),
        _ => String::new(),
    };
    eprintln!(
        "published {acked} messages to {}{offsets} in {secs:.2} s: {:.0} msg/s, {:.1} MiB/s",
        args.topic,
        acked as f64 / secs,
        bytes as f64 / secs / (1024.0 * 1024.0)
    );
    if not_stored > 0 {
        eprintln!("{not_stored} of them were dropped, rejected or dead-lettered by plugins");
    }
    Ok(())
}

async fn publish_lines(client: &Client, args: &PubArgs) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let mut n = 0u64;
    for line in stdin.lock().lines() {
        let line = line.context("failed to read standard input")?;
        n += 1;
        let line = Payload::template(line, None, n)?;
        let ack = client.publish_batch(vec![message(args, &line, n)]).await?;
        for outcome in &ack.outcomes {
            println!("{}", describe(outcome));
        }
    }
    Ok(())
}
