//! `core-pubsub`: core NATS, one publisher and `--subscribers` subscribers,
//! each on its own connection (as `sluice bench pubsub` connects them),
//! counted as received by the subscribers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::window::{measure, Span, Steady};

/// The subject every run publishes to.
const SUBJECT: &str = "bench.core";

/// Counted (no window): a subscriber that gets nothing for this long has
/// what it will get (core NATS drops for a subscriber that falls behind).
const QUIET: Duration = Duration::from_secs(2);

/// The publisher reads the clock once per this many messages.
const CLOCK_EVERY: u64 = 64;

/// Publishes messages of `size` bytes from `publisher` over `span`;
/// what `subscribers` received.
pub async fn core_pubsub(
    publisher: async_nats::Client,
    subscribers: Vec<async_nats::Client>,
    size: usize,
    span: Span,
) -> anyhow::Result<Steady> {
    let wanted = span.limit();
    let counters: Vec<Arc<AtomicU64>> = subscribers.iter().map(|_| Arc::default()).collect();
    let mut receivers = FuturesUnordered::new();
    for (client, received) in subscribers.into_iter().zip(counters.clone()) {
        let mut sub = client.subscribe(SUBJECT).await?;
        // The server knows the interest before the first publish.
        client.flush().await?;
        receivers.push(tokio::spawn(async move {
            let mut got = 0u64;
            let mut last = Instant::now();
            let stop = match span.phases() {
                Some(phases) => phases.close,
                None => last + QUIET,
            };
            let idle = tokio::time::sleep_until(stop.into());
            tokio::pin!(idle);
            while got < wanted {
                tokio::select! {
                    m = sub.next() => match m {
                        Some(_) => {
                            got += 1;
                            received.store(got, Ordering::Relaxed);
                            // As sluice bench: the clock is read every 64 messages.
                            if span.phases().is_none() && (got.is_multiple_of(CLOCK_EVERY) || got == wanted) {
                                last = Instant::now();
                                idle.as_mut().reset((last + QUIET).into());
                            }
                        }
                        None => break,
                    },
                    () = &mut idle => break,
                }
            }
            drop((sub, client));
            last
        }));
    }
    let body = Bytes::from(vec![b'x'; size]);
    let work = async {
        let began = Instant::now();
        let mut sent = 0u64;
        while sent < wanted {
            if sent.is_multiple_of(CLOCK_EVERY) && !span.sending(Instant::now()) {
                break;
            }
            publisher.publish(SUBJECT, body.clone()).await?;
            sent += 1;
        }
        publisher.flush().await?;
        let mut last = began;
        while let Some(joined) = receivers.next().await {
            last = last.max(joined?);
        }
        Ok(((), last))
    };
    let received = || counters.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    let ((), steady) = measure(span, received, work).await?;
    Ok(steady)
}

/// The subject `core-request` asks on.
const REQUEST_SUBJECT: &str = "bench.request";

/// How long one request may wait for its reply.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `core-request`: `responder` answers every request with its payload;
/// each of `requesters` sends one request at a time and waits for the
/// reply (as `sluice bench request`). Counted as replies received; each
/// round trip's latency in µs.
pub async fn core_request(
    responder: async_nats::Client,
    requesters: Vec<async_nats::Client>,
    size: usize,
    span: Span,
) -> anyhow::Result<(Vec<u64>, Steady)> {
    let mut requests = responder.subscribe(REQUEST_SUBJECT).await?;
    responder.flush().await?;
    let answering = tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            if let Some(reply) = request.reply {
                let _ = responder.publish(reply, request.payload).await;
            }
        }
    });
    let limit = span.limit();
    let sent = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let body = Bytes::from(vec![b'x'; size]);
    let counter = answered.clone();
    let work = async {
        let mut loops = FuturesUnordered::new();
        for client in requesters {
            let (sent, answered, body) = (sent.clone(), answered.clone(), body.clone());
            let client = client.clone();
            loops.push(async move {
                let mut latencies = Vec::new();
                let mut last = Instant::now();
                while span.sending(Instant::now()) && sent.fetch_add(1, Ordering::Relaxed) < limit {
                    let start = Instant::now();
                    let reply = tokio::time::timeout(
                        REQUEST_TIMEOUT,
                        client.request(REQUEST_SUBJECT, body.clone()),
                    )
                    .await??;
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
    answering.abort();
    Ok((latencies, steady))
}
