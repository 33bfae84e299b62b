//! The `pubsub` scenario: live fan-out from one publisher to
//! `--subscribers` subscribers, measured as received; latency is publish
//! to receive, from send times carried in sampled payloads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use sluice_client::{Message, StartPosition};

use super::load::{publish_load, run_id};
use super::report::Outcome;
use super::target::Target;
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

/// `pubsub`: subscribers first, then `--count` messages published.
pub async fn pubsub(args: &BenchArgs, target: &Target) -> anyhow::Result<Outcome> {
    let topic = format!("bench.pubsub.{}", run_id());
    let count = args.count;
    let epoch = Instant::now();
    let deadline = epoch + args.max_time;
    let mut receivers = FuturesUnordered::new();
    for _ in 0..args.subscribers {
        let client = target.client().await?;
        let mut sub = client
            .subscribe(topic.clone(), StartPosition::Latest)
            .await?;
        receivers.push(tokio::spawn(async move {
            let mut got = 0u64;
            let mut latencies = Vec::with_capacity((count / SAMPLE_EVERY + 1) as usize);
            let mut last = epoch;
            // Quiet for 2 s (messages dropped for a slow subscriber never
            // come) or past the deadline: done. The clock is read only for
            // sampled messages, so measuring costs the receiver little.
            let idle = tokio::time::sleep(QUIET);
            tokio::pin!(idle);
            while got < count {
                tokio::select! {
                    m = sub.recv() => match m {
                        Some(Ok(m)) => {
                            got += 1;
                            if m.offset.is_multiple_of(SAMPLE_EVERY) || got == count {
                                let now = Instant::now();
                                last = now;
                                if let Some(sent) = sent_at(&m.payload).filter(|_| m.offset.is_multiple_of(SAMPLE_EVERY)) {
                                    let at = now.duration_since(epoch).as_micros() as u64;
                                    latencies.push(at.saturating_sub(sent));
                                }
                                let until = (now + QUIET).min(deadline);
                                idle.as_mut().reset(until.into());
                            }
                        }
                        _ => break,
                    },
                    () = &mut idle => break,
                }
            }
            client.close().await;
            (got, last, latencies)
        }));
    }
    let size = args.size;
    let plain = Bytes::from(vec![b'x'; size]);
    // Every SAMPLE_EVERY-th message (by offset: the topic is fresh) carries
    // its send time; the rest share one buffer.
    let make = Arc::new(move |i: u64| {
        let body = if i.is_multiple_of(SAMPLE_EVERY) {
            payload(size, epoch)
        } else {
            plain.clone()
        };
        Message::new(topic.clone(), body)
    });
    let start = Instant::now();
    let (sent, _, _) = publish_load(args, target, "pubsub", make).await?;
    let mut received = 0;
    let mut latencies = Vec::new();
    let mut last = start;
    while let Some(joined) = receivers.next().await {
        let (got, at, lat) = joined?;
        received += got;
        last = last.max(at);
        latencies.extend(lat);
    }
    let expected = sent * args.subscribers as u64;
    if received < expected {
        eprintln!(
            "pubsub: {received} of {expected} messages received (live subscriptions drop for a subscriber that falls behind)"
        );
    }
    let label = format!("pubsub 1:{}", args.subscribers);
    Ok(Outcome::new(&label, args.size, received, last - start).latencies(latencies))
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
