//! `sluice pub`: one message, N copies (pipelined batches), or one message
//! per line of standard input.

use std::io::BufRead;
use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use sluice_client::{Client, Message, MessageOutcome};

use super::args::PubArgs;
use super::connect::connect;
use super::display::{describe, progress_bar};

/// Below this many messages a progress bar would only flicker.
const PROGRESS_FROM: u64 = 1000;

/// Builds message number `n` (1-based).
fn message(args: &PubArgs, template: &MessageTemplate, n: u64) -> Message {
    let payload = match template {
        MessageTemplate::Text(text) if text.contains("{n}") => {
            Bytes::from(text.replace("{n}", &n.to_string()))
        }
        MessageTemplate::Text(text) => Bytes::from(text.clone()),
        MessageTemplate::Bytes(bytes) => bytes.clone(),
    };
    let mut m = Message::new(args.topic.clone(), payload);
    if let Some(key) = &args.key {
        m = m.key(key.replace("{n}", &n.to_string()));
    }
    for (name, value) in &args.headers {
        m = m.header(name.clone(), value.clone());
    }
    if let Some(id) = &args.id {
        m = m.id(id.replace("{n}", &n.to_string()));
    }
    m
}

enum MessageTemplate {
    Text(String),
    Bytes(Bytes),
}

/// Runs `sluice pub`.
pub async fn run(args: PubArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.window == 0 {
        bail!("--batch and --window must be at least 1");
    }
    let template = match (&args.message, &args.file, args.size) {
        (Some(text), _, _) => Some(MessageTemplate::Text(text.clone())),
        (_, Some(file), _) => Some(MessageTemplate::Bytes(
            std::fs::read(file)
                .with_context(|| format!("failed to read {}", file.display()))?
                .into(),
        )),
        (_, _, Some(size)) => Some(MessageTemplate::Bytes(Bytes::from(vec![b'x'; size]))),
        _ => None,
    };
    let client = connect(&args.client).await?;
    match template {
        Some(template) if args.count == 1 => {
            let ack = client
                .publish_batch(vec![message(&args, &template, 1)])
                .await?;
            for outcome in &ack.outcomes {
                println!("{}", describe(outcome));
            }
            if let Some(MessageOutcome::Rejected(reason)) = ack.outcomes.first() {
                client.close().await;
                bail!("the broker rejected the message: {reason}");
            }
        }
        Some(template) => publish_many(&client, &args, &template).await?,
        None => publish_lines(&client, &args).await?,
    }
    client.close().await;
    Ok(())
}

async fn publish_many(
    client: &Client,
    args: &PubArgs,
    template: &MessageTemplate,
) -> anyhow::Result<()> {
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
            let batch: Vec<Message> = (next..=end).map(|n| message(args, template, n)).collect();
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
        let template = MessageTemplate::Text(line);
        let ack = client
            .publish_batch(vec![message(args, &template, n)])
            .await?;
        for outcome in &ack.outcomes {
            println!("{}", describe(outcome));
        }
    }
    Ok(())
}
