//! A subscriber that stops reading while big messages are published: what
//! the broker holds for it stays within `limits.subscriber_buffer_bytes`
//! (seen on `/metrics`), and when it reads again a replaying subscriber
//! gets every message in order, a live one every message it is not told it
//! missed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use sluice_client::{Delivered, StartPosition, Subscription};
use sluice_tests::{bounded, bounded_for, collect, wait_until, TestBroker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Payload of each message: big against the byte bound, small against the
/// message bound (10,000 by default), so only bytes can fill the buffer.
const PAYLOAD: usize = 32 * 1024;
/// Messages published while the subscribers do not read: 12.5 MiB, several
/// times what the client, QUIC and the byte bound hold together.
const COUNT: u64 = 400;
/// `limits.subscriber_buffer_bytes` of the test broker.
const BUFFER_BYTES: usize = 1024 * 1024;
/// Publishes in flight at once.
const IN_FLIGHT: usize = 32;

/// The body of a `GET /metrics` from the admin listener.
async fn scrape(admin: SocketAddr) -> String {
    let mut stream = bounded("an admin connection", tokio::net::TcpStream::connect(admin))
        .await
        .expect("admin listener reachable");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("request written");
    let mut response = Vec::new();
    bounded("a /metrics response", stream.read_to_end(&mut response))
        .await
        .expect("response read");
    let text = String::from_utf8(response).expect("utf-8 response");
    let (_, body) = text.split_once("\r\n\r\n").expect("a full response");
    body.to_owned()
}

/// The value of the sample `name` (with its labels), 0 when absent.
fn sample(text: &str, name: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// Message `i`'s payload: its number, then filler.
fn payload(i: u64) -> Vec<u8> {
    let mut p = format!("{i:08}:").into_bytes();
    p.resize(PAYLOAD, b'x');
    p
}

fn check_payload(m: &Delivered) {
    assert_eq!(m.payload.len(), PAYLOAD, "offset {}", m.offset);
    assert_eq!(
        &m.payload[..9],
        format!("{:08}:", m.offset).as_bytes(),
        "message at offset {} has the payload published there",
        m.offset
    );
}

/// Reads a live subscription until every one of `count` messages was either
/// received or reported dropped; the offsets received.
async fn read_live(sub: &mut Subscription, count: u64, limit: Duration) -> Vec<u64> {
    let mut received = Vec::new();
    let deadline = Instant::now() + limit;
    while received.len() as u64 + sub.dropped() < count {
        assert!(
            Instant::now() < deadline,
            "live subscriber: {} received + {} reported dropped of {count} within {limit:?}",
            received.len(),
            sub.dropped()
        );
        match tokio::time::timeout(Duration::from_millis(300), sub.recv()).await {
            Ok(Some(Ok(m))) => {
                check_payload(&m);
                received.push(m.offset);
            }
            Ok(Some(Err(e))) => panic!("live subscription failed: {e}"),
            Ok(None) => panic!("live subscription ended after {} messages", received.len()),
            Err(_) => {} // a frame that only reports drops does not wake recv()
        }
    }
    received
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_holds_bounded_bytes_and_then_gets_its_messages(
) -> anyhow::Result<()> {
    let broker = TestBroker::start_with(|c| {
        c.limits.subscriber_buffer_bytes = BUFFER_BYTES;
        // Small frames, so the client's own queue of delivery frames holds
        // little and the broker soon has to hold the rest.
        c.limits.max_frame_bytes = 64 * 1024;
    })
    .await?;
    let admin = broker.admin_addr().expect("admin listener on by default");
    let setup = broker.client().await?;
    setup.create_topic("big", None, None).await?;

    // Two subscribers that read nothing until every message is acked.
    let replaying_client = broker.client().await?;
    let mut replaying = replaying_client
        .subscribe("big", StartPosition::Earliest)
        .await?;
    let live_client = broker.client().await?;
    let mut live = live_client.subscribe("big", StartPosition::Latest).await?;

    // What the broker holds for the one subscriber that holds the most,
    // sampled while publishing.
    let most_held = Arc::new(AtomicI64::new(0));
    let stop = CancellationToken::new();
    let sampler = tokio::spawn({
        let (most_held, stop) = (most_held.clone(), stop.clone());
        async move {
            let mut every = tokio::time::interval(Duration::from_millis(20));
            while !stop.is_cancelled() {
                tokio::select! {
                    _ = every.tick() => {}
                    () = stop.cancelled() => {}
                }
                let text = scrape(admin).await;
                let held = sample(&text, "sluice_subscriber_queued_bytes_max");
                most_held.fetch_max(held, Ordering::Relaxed);
            }
        }
    });

    let publisher = broker.client().await?;
    bounded_for(
        "every publish to be acked",
        Duration::from_secs(60),
        async {
            let mut in_flight = FuturesUnordered::new();
            for i in 0..COUNT {
                if in_flight.len() >= IN_FLIGHT {
                    in_flight.next().await.expect("a publish in flight")?;
                }
                let publisher = publisher.clone();
                in_flight.push(async move {
                    publisher
                        .publish("big", payload(i))
                        .await
                        .map(|stored| stored.offset)
                });
            }
            while let Some(acked) = in_flight.next().await {
                acked?;
            }
            anyhow::Ok(())
        },
    )
    .await?;

    // The buffer filled up to its bound: the subscribers really fell behind.
    let one_message = PAYLOAD as i64 + 1024;
    let full = wait_until(
        "a subscriber's buffer to fill up to its byte bound",
        Duration::from_secs(10),
        || async {
            let held = sample(&scrape(admin).await, "sluice_subscriber_queued_bytes_max");
            if held >= BUFFER_BYTES as i64 - one_message {
                Ok(held)
            } else {
                Err(held)
            }
        },
    )
    .await;
    stop.cancel();
    bounded("the metrics sampler", sampler).await?;
    let most = most_held.load(Ordering::Relaxed).max(full);
    assert!(
        most <= BUFFER_BYTES as i64,
        "a subscriber held {most} bytes, over subscriber_buffer_bytes = {BUFFER_BYTES}"
    );
    let text = scrape(admin).await;
    let total = sample(&text, "sluice_subscriber_queued_bytes");
    assert!(
        total <= 2 * BUFFER_BYTES as i64,
        "two subscribers held {total} bytes in all"
    );
    assert!(
        sample(&text, "sluice_subscriber_queued_messages") < COUNT as i64,
        "{text}"
    );

    // Reading again: the replaying subscriber gets everything, in order
    // (what it missed live is read back from the log).
    let got = collect(&mut replaying, COUNT as usize, Duration::from_secs(60)).await;
    assert_eq!(
        got.iter().map(|m| m.offset).collect::<Vec<_>>(),
        (0..COUNT).collect::<Vec<_>>(),
        "replaying subscriber got every message once, in order"
    );
    got.iter().for_each(check_payload);

    // The live one gets messages in order and is told how many it missed.
    let received = read_live(&mut live, COUNT, Duration::from_secs(60)).await;
    assert!(live.dropped() > 0, "the live subscriber was told of drops");
    assert!(
        received.windows(2).all(|w| w[0] < w[1]),
        "live subscriber's messages are in order: {received:?}"
    );

    // The drops are counted, and nothing is held once both have read.
    wait_until(
        "drops counted and the buffers empty",
        Duration::from_secs(10),
        || async {
            let text = scrape(admin).await;
            let state = (
                sample(
                    &text,
                    "sluice_subscriber_dropped_total{subscription=\"live\"}",
                ),
                sample(
                    &text,
                    "sluice_subscriber_dropped_total{subscription=\"replaying\"}",
                ),
                sample(&text, "sluice_subscriber_queued_bytes"),
            );
            match state {
                (live, replaying, 0) if live > 0 && replaying > 0 => Ok(()),
                _ => Err(state),
            }
        },
    )
    .await;
    assert_eq!(
        sample(
            &scrape(admin).await,
            "sluice_subscriber_dropped_total{subscription=\"live\"}"
        ),
        live.dropped() as i64,
        "the live drops counted are those the subscriber was told of"
    );
    Ok(())
}
