//! Durability: a clean restart, a SIGKILLed broker, torn and corrupt log tails.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sluice_client::{Message, StartPosition};
use sluice_tests::history::{publish_until_failure, Ledger, Outgoing};
use sluice_tests::{
    bounded, bounded_for, collect, fetch_all, offsets, summary, wait_until, ChildBroker, TestBroker,
};

#[tokio::test]
async fn data_survives_a_clean_restart() -> anyhow::Result<()> {
    let mut broker = TestBroker::start().await?;
    let client = broker.client().await?;
    for i in 0..30u64 {
        let mut message = Message::new("keep.a", format!("a{i}")).header("n", i.to_string());
        if i % 3 == 0 {
            message = message.key(format!("k{}", i % 7)).id(format!("id-{i}"));
        }
        client.publish_message(message).await?;
        if i % 2 == 0 {
            client
                .publish("keep.b", vec![i as u8; 100 + i as usize])
                .await?;
        }
    }
    let before_a = fetch_all(&client, "keep.a", StartPosition::Earliest).await?;
    let before_b = fetch_all(&client, "keep.b", StartPosition::Earliest).await?;
    assert_eq!(offsets(&before_a), (0..30).collect::<Vec<_>>());
    assert_eq!(offsets(&before_b), (0..15).collect::<Vec<_>>());
    client.close().await;

    broker.restart().await?;
    let client = broker.client().await?;
    // Everything is back, every field intact.
    assert_eq!(
        fetch_all(&client, "keep.a", StartPosition::Earliest).await?,
        before_a
    );
    assert_eq!(
        fetch_all(&client, "keep.b", StartPosition::Earliest).await?,
        before_b
    );
    let names: Vec<_> = client
        .list_topics()
        .await?
        .into_iter()
        .map(|t| (t.name, t.next_offset))
        .collect();
    assert_eq!(
        names,
        vec![("keep.a".to_owned(), 30), ("keep.b".to_owned(), 15)]
    );

    // New publishes continue the offsets; a replay sees old and new.
    assert_eq!(client.publish("keep.a", "after").await?.offset, 30);
    assert_eq!(client.publish("keep.b", "after").await?.offset, 15);
    let mut sub = client.subscribe("keep.a", StartPosition::Earliest).await?;
    let got = collect(&mut sub, 31, Duration::from_secs(10)).await;
    assert_eq!(&got[..30], &before_a[..]);
    assert_eq!(
        summary(&got[30..]),
        vec![("keep.a".to_owned(), 30, "after".to_owned())]
    );
    Ok(())
}

fn payload(i: u64) -> Bytes {
    Bytes::from(format!("crash-{i:08}-{}", "x".repeat((i % 50) as usize)))
}

/// How far a producer got, for a timed-out wait: formatted (with the
/// broker's output, read then) only when the wait fails.
struct Progress<'a> {
    acks: u64,
    broker: &'a ChildBroker,
}

impl std::fmt::Debug for Progress<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} acks; broker output:\n{}",
            self.acks,
            self.broker.log()
        )
    }
}

#[tokio::test]
async fn acknowledged_messages_survive_sigkill() -> anyhow::Result<()> {
    sluice_tests::init_tracing();
    let dir = tempfile::Builder::new()
        .prefix("sluice-e2e-crash-")
        .tempdir()?;
    let binary = Path::new(env!("CARGO_BIN_EXE_sluice-under-test"));
    // Small segments: the kill may land around a segment roll too.
    let config = "[storage]\nfsync = \"always\"\nsegment_bytes = 8192\n";
    let mut broker = ChildBroker::start(binary, dir.path(), config).await?;

    let client = broker.client().await?;
    // Sequentially numbered messages, 32 at a time, until the broker dies;
    // the ledger holds every one sent and every ack.
    let ledger = Arc::new(Mutex::new(Ledger::new()));
    let producer = tokio::spawn({
        let (sending, acked) = (ledger.clone(), ledger.clone());
        let mut next = 0u64;
        publish_until_failure(
            client.clone(),
            32,
            move || {
                let body = payload(next);
                next += 1;
                sending.lock().unwrap().sent("crash.t", &body);
                vec![Outgoing {
                    topic: "crash.t".into(),
                    id: None,
                    payload: body,
                }]
            },
            move |batch, stored| {
                let mut ledger = acked.lock().unwrap();
                for (message, at) in batch.iter().zip(stored) {
                    ledger.acked(&message.topic, at.offset, &message.payload);
                }
            },
        )
    });
    wait_until(
        "400 acks before the kill",
        Duration::from_secs(20),
        || async {
            let n = ledger.lock().unwrap().acks();
            assert!(
                !producer.is_finished(),
                "producer stopped after {n} acks; broker output:\n{}",
                broker.log()
            );
            if n >= 400 {
                Ok(())
            } else {
                Err(Progress {
                    acks: n,
                    broker: &broker,
                })
            }
        },
    )
    .await;
    broker.kill()?;
    // A killed broker sends no close: end the connection here rather than
    // wait for its idle timeout. Every ack recorded was sent before the kill.
    client.connection().close(0u32.into(), b"broker killed");
    bounded("the producer to stop", producer).await?;
    drop(client);
    let mut ledger = std::mem::take(&mut *ledger.lock().unwrap());
    assert!(ledger.acks() >= 400);

    broker.restart().await?;
    let client = broker.client().await?;
    let stored = fetch_all(&client, "crash.t", StartPosition::Earliest).await?;
    // Offsets dense from 0, every acked message at its offset with its
    // bytes; unacked ones may or may not be there, but whatever is there
    // is a whole message that was sent, stored once.
    let mut violations = ledger.take_violations();
    violations.extend(ledger.check_log("crash.t", 0, &stored));
    assert!(
        violations.is_empty(),
        "the recovered log contradicts the acks:\n{}",
        violations
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let info = client.topic_info("crash.t").await?;
    assert_eq!(
        (info.start_offset, info.next_offset),
        (0, stored.len() as u64)
    );
    assert!(info.segments > 1, "expected rolled segments: {info:?}");

    // The log takes new writes at its end.
    let next = client.publish("crash.t", "after the crash").await?;
    assert_eq!(next.offset, stored.len() as u64);
    let tail = client
        .fetch("crash.t", StartPosition::Offset(next.offset), 10)
        .await?;
    assert_eq!(
        summary(&tail.messages),
        vec![(
            "crash.t".to_owned(),
            next.offset,
            "after the crash".to_owned()
        )]
    );
    eprintln!(
        "{} acked before SIGKILL, {} recovered",
        ledger.acks(),
        stored.len()
    );
    Ok(())
}

/// Cuts `bytes` off the end of a file.
fn truncate_by(path: &Path, bytes: u64) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    let len = file.metadata()?.len();
    file.set_len(len - bytes)?;
    file.sync_all()?;
    Ok(())
}

/// Flips the bits of the byte `from_end` bytes before the end of a file.
fn flip_byte(path: &Path, from_end: usize) -> anyhow::Result<()> {
    let mut bytes = std::fs::read(path)?;
    let at = bytes.len() - from_end;
    bytes[at] ^= 0xFF;
    std::fs::write(path, bytes)?;
    Ok(())
}

#[tokio::test]
async fn a_torn_or_corrupt_last_record_is_truncated_away() -> anyhow::Result<()> {
    let mut broker = TestBroker::start().await?;
    let client = broker.client().await?;
    let topics = ["tail.torn", "tail.flipped", "tail.header"];
    for topic in topics {
        for i in 0..10u64 {
            client
                .publish(topic, format!("{topic} record {i} {}", "p".repeat(40)))
                .await?;
        }
    }
    client.close().await;
    broker.stop().await?;

    // Half of the last record's body is gone (a torn write).
    truncate_by(&broker.segment_path("tail.torn", 0), 20)?;
    // One byte of the last record's payload is wrong: its CRC does not match.
    flip_byte(&broker.segment_path("tail.flipped", 0), 3)?;
    // Only part of the last record's header is left.
    let path = broker.segment_path("tail.header", 0);
    let record_len = std::fs::metadata(&path)?.len() / 10;
    truncate_by(&path, record_len - 3)?;

    broker.restart().await?;
    let client = broker.client().await?;
    for topic in topics {
        let stored = fetch_all(&client, topic, StartPosition::Earliest).await?;
        let expected: Vec<_> = (0..9u64)
            .map(|i| {
                (
                    topic.to_owned(),
                    i,
                    format!("{topic} record {i} {}", "p".repeat(40)),
                )
            })
            .collect();
        assert_eq!(
            summary(&stored),
            expected,
            "{topic} keeps exactly the good records"
        );
        let info = client.topic_info(topic).await?;
        assert_eq!(
            (info.start_offset, info.next_offset, info.messages),
            (0, 9, 9),
            "{topic}"
        );
        let next = client.publish(topic, "new").await?;
        assert_eq!(
            next.offset, 9,
            "{topic}: a new record takes the place of the bad one"
        );
        let stored = fetch_all(&client, topic, StartPosition::Earliest).await?;
        assert_eq!(offsets(&stored), (0..10).collect::<Vec<_>>(), "{topic}");
        assert_eq!(stored[9].payload.as_ref(), b"new");
    }

    // And it is stored properly: it survives another restart.
    broker.restart().await?;
    let client = broker.client().await?;
    for topic in topics {
        let stored = bounded_for(
            "a fetch",
            Duration::from_secs(10),
            fetch_all(&client, topic, StartPosition::Earliest),
        )
        .await?;
        assert_eq!(
            offsets(&stored),
            (0..10).collect::<Vec<_>>(),
            "{topic} after a second restart"
        );
        assert_eq!(stored[9].payload.as_ref(), b"new");
    }
    Ok(())
}
