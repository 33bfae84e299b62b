//! The `request` scenario: request-reply round trips. One responder
//! client answers every request with its payload (replies sent
//! concurrently); `--producers` requester connections each send one
//! request at a time and wait for its reply. The figure is replies
//! received per second; latency is each round trip.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::load::{run_id, span};
use super::report::Outcome;
use super::target::Target;
use super::window::measure;
use crate::cli::args::BenchArgs;

/// How long one request may wait for its reply.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `request`: a responder, then `--producers` requesters over the span.
pub async fn request(args: &BenchArgs, target: &Target) -> anyhow::Result<Outcome> {
    let topic = format!("bench.request.{}", run_id());
    let responder_client = target.client().await?;
    let mut responder = responder_client.respond(topic.clone()).await?;
    let answering = tokio::spawn(async move {
        let mut replies = FuturesUnordered::new();
        loop {
            tokio::select! {
                request = responder.next() => match request {
                    Some(Ok(request)) => replies.push(async move {
                        let payload = request.payload.clone();
                        request.reply(payload).await
                    }),
                    _ => break,
                },
                Some(_) = replies.next(), if !replies.is_empty() => {}
            }
        }
    });
    let mut requesters = Vec::with_capacity(args.producers);
    for _ in 0..args.producers.max(1) {
        requesters.push(target.client().await?);
    }
    let span = span(args);
    let limit = span.limit();
    let sent = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let body = Bytes::from(vec![b'x'; args.size]);
    let counter = answered.clone();
    let work = async {
        let mut loops = FuturesUnordered::new();
        for client in &requesters {
            let (sent, answered, body, topic) =
                (sent.clone(), answered.clone(), body.clone(), topic.clone());
            loops.push(async move {
                let mut latencies = Vec::new();
                let mut last = Instant::now();
                while span.sending(Instant::now()) && sent.fetch_add(1, Ordering::Relaxed) < limit {
                    let start = Instant::now();
                    let reply = client
                        .request(topic.clone(), body.clone(), REQUEST_TIMEOUT)
                        .await
                        .context("a bench request failed")?;
                    anyhow::ensure!(
                        reply.payload.len() == body.len(),
                        "a reply of the wrong size"
                    );
                    last = Instant::now();
                    answered.fetch_add(1, Ordering::Relaxed);
                    if span.samples(start) {
                        latencies.push(last.duration_since(start).as_micros() as u64);
                    }
                }
                anyhow::Ok((latencies, last))
            });
        }
        let mut latencies = Vec::new();
        let mut last = Instant::now();
        while let Some(done) = loops.next().await {
            let (mine, at) = done?;
            latencies.extend(mine);
            last = last.max(at);
        }
        anyhow::Ok((latencies, last))
    };
    let (latencies, steady) = measure(span, || counter.load(Ordering::Relaxed), work).await?;
    for client in requesters {
        client.close().await;
    }
    responder_client.close().await;
    answering.abort();
    let label = format!("request-reply {} conn", args.producers.max(1));
    Ok(Outcome::measured(&label, args.size, steady).latencies(latencies))
}
