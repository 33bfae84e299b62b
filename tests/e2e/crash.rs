//! Durability: a clean restart, a SIGKILLed broker, torn and corrupt log tails.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use sluice_client::{Client, Delivered, Message, StartPosition};
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

fn payload(i: u64) -> String {
    format!("crash-{i:08}-{}", "x".repeat((i % 50) as usize))
}

/// Publishes sequentially numbered messages, `in_flight` at a time, until the
/// connection fails; records every acknowledged `(offset, payload)`.
async fn produce(client: Client, acked: Arc<Mutex<Vec<(u64, String)>>>, in_flight: usize) {
    let mut pending = FuturesUnordered::new();
    let mut i = 0u64;
    loop {
        while pending.len() < in_flight {
            let client = client.clone();
            let body = payload(i);
            i += 1;
            pending.push(async move {
                client
                    .publish("crash.t", body.clone())
                    .await
                    .map(|s| (s.offset, body))
            });
        }
        match pending.next().await {
            Some(Ok(ack)) => acked.lock().unwrap().push(ack),
            Some(Err(_)) | None => return,
        }
    }
}

/// How far a producer got, for a timed-out wait: formatted (with the
/// broker's output, read then) only when the wait fails.
struct Progress<'a> {
    acks: usize,
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

fn check_recovered(stored: &[Delivered], acked: &[(u64, String)]) {
    assert_eq!(
        offsets(stored),
        (0..stored.len() as u64).collect::<Vec<_>>(),
        "offsets are dense from 0"
    );
    for (offset, body) in acked {
        let Some(m) = stored.get(*offset as usize) else {
            panic!(
                "acknowledged message at offset {offset} is missing: only {} stored",
                stored.len()
            )
        };
        assert_eq!(
            m.payload.as_ref(),
            body.as_bytes(),
            "payload at acknowledged offset {offset}"
        );
    }
    // Unacknowledged messages may or may not be there, but whatever is there
    // is a whole message that was sent, stored once.
    let mut seen = BTreeMap::new();
    for m in stored {
        let text = std::str::from_utf8(&m.payload).expect("utf-8 payload");
        let n: u64 = text[6..14].parse().expect("numbered payload");
        assert_eq!(text, payload(n), "stored payload at {}", m.offset);
        assert!(
            seen.insert(n, m.offset).is_none(),
            "message {n} stored twice"
        );
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
    let acked = Arc::new(Mutex::new(Vec::new()));
    let producer = tokio::spawn(produce(client.clone(), acked.clone(), 32));
    wait_until(
        "400 acks before the kill",
        Duration::from_secs(20),
        || async {
            let n = acked.lock().unwrap().len();
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
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.len() >= 400);

    broker.restart().await?;
    let client = broker.client().await?;
    let stored = fetch_all(&client, "crash.t", StartPosition::Earliest).await?;
    check_recovered(&stored, &acked);
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
        acked.len(),
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
