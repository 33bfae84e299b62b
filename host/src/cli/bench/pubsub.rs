//! The `pubsub` scenario: live fan-out from one publisher to
//! `--subscribers` subscribers, measured as received; latency is publish
//! to receive, from send times carried in sampled payloads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use sluice_client::{Message, StartPosition};

use super::load::{publish_load, run_id, span, Load};
use super::report::Outcome;
use super::target::Target;
use super::window::measure;
use crate::cli::args::BenchArgs;

/// One message in this many carries its send time (pub/sub latency samples).
const SAMPLE_EVERY: u64 = 64;

/// How long a subscriber waits for a message before it counts the rest as
/// dropped (a live subscription drops for a subscriber that falls behind).
const QUIET: Duration = Duration::from_secs(2);

/// The payload of a bench message: `size` bytes, the first 8 the send time
/// (µs since `epoch`) when there is room.
fn payload(size: usize, epoch: Instant) -> Bytes {
    let mut p = vec![b'x'; size];
    if size >= 8 {
        p[..8].copy_from_slice(&(epoch.elapsed().as_micros() as u64).to_le_bytes());
    }
    Bytes::from(p)
}

fn sent_at(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.get(..8)?.try_into().ok()?))
}

/// `pubsub`: subscribers first, then the publisher, over the span the
/// flags ask for; counted as received by the subscribers.
pub async fn pubsub(args: &BenchArgs, target: &Target) -> anyhow::Result<Outcome> {
    let topic = format!("bench.pubsub.{}", run_id());
    let epoch = Instant::now();
    let deadline = epoch + args.max_time;
    let mut subscribers = Vec::with_capacity(args.subscribers);
    for _ in 0..args.subscribers {
        let client = target.client().await?;
        let sub = client
            .subscribe(topic.clone(), StartPosition::Latest)
            .await?;
        subscribers.push((client, sub));
    }
    let span = span(args);
    let wanted = span.limit();
    let counters: Vec<Arc<AtomicU64>> = (0..args.subscribers).map(|_| Arc::default()).collect();
    let mut receivers = FuturesUnordered::new();
    for ((client, mut sub), received) in subscribers.into_iter().zip(counters.clone()) {
        receivers.push(tokio::spawn(async move {
            let mut got = 0u64;
            let mut latencies = Vec::new();
            let mut last = epoch;
            // Timed, a subscriber stops when the window closes; counted,
            // when it has them all or nothing came for QUIET. The clock is
            // read only for sampled messages, so measuring costs the
            // receiver little.
            let stop = match span.phases() {
                Some(phases) => phases.close,
                None => Instant::now() + QUIET,
            };
            let idle = tokio::time::sleep_until(stop.min(deadline).into());
            tokio::pin!(idle);
            while got < wanted {
                tokio::select! {
                    m = sub.recv() => match m {
                        Some(Ok(m)) => {
                            got += 1;
                            received.store(got, Ordering::Relaxed);
                            let sampled = m.offset.is_multiple_of(SAMPLE_EVERY);
                            if sampled || got == wanted {
                                let now = Instant::now();
                                last = now;
                                let in_window = sampled && span.samples(now);
                                if let Some(sent) = sent_at(&m.payload).filter(|_| in_window) {
                                    let at = now.duration_since(epoch).as_micros() as u64;
                                    latencies.push(at.saturating_sub(sent));
                                }
                                if span.phases().is_none() {
                                    idle.as_mut().reset((now + QUIET).min(deadline).into());
                                }
                            }
                        }
                        _ => break,
                    },
                    () = &mut idle => break,
                }
            }
            client.close().await;
            (last, latencies)
        }));
    }
    let size = args.size;
    let plain = Bytes::from(vec![b'x'; size]);
    // Every SAMPLE_EVERY-th message (by offset: the topic is fresh) carries
    // its send time; the rest share one buffer.
    let t = topic.clone();
    let make = Arc::new(move |i: u64| {
        let body = if i.is_multiple_of(SAMPLE_EVERY) {
            payload(size, epoch)
        } else {
            plain.clone()
        };
        Message::new(t.clone(), body)
    });
    let load = Load::from_args(args);
    let work = async {
        publish_load(args, target, "pubsub", make, span, &load).await?;
        let mut latencies = Vec::new();
        let mut last = epoch;
        while let Some(joined) = receivers.next().await {
            let (at, lat) = joined?;
            last = last.max(at);
            latencies.extend(lat);
        }
        Ok((latencies, last))
    };
    let received = || counters.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    let (latencies, steady) = measure(span, received, work).await?;
    let expected = load.acked() * args.subscribers as u64;
    if span.phases().is_none() && steady.messages < expected {
        eprintln!(
            "pubsub: {} of {expected} messages received (live subscriptions drop for a subscriber that falls behind)",
            steady.messages
        );
    }
    target.clean_up(args, &topic).await;
    let label = format!("pubsub 1:{}", args.subscribers);
    Ok(Outcome::measured(&label, args.size, steady).latencies(latencies))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampled_payloads_carry_their_send_time() {
        let epoch = Instant::now() - Duration::from_millis(5);
        let p = payload(16, epoch);
        assert_eq!(p.len(), 16);
        assert!(sent_at(&p).unwrap() >= 5_000);
        assert_eq!(payload(4, epoch), Bytes::from_static(b"xxxx"));
        assert_eq!(sent_at(b"short"), None);
    }
}
