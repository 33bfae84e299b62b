//! Replaying subscriptions (from an offset, a time, the start) that then
//! follow live without gap or duplicate, and `fetch`.

use std::time::Duration;

use sluice_client::{Client, ErrorCode, StartPosition, Subscription};
use sluice_tests::{bounded, collect, fetch_all, now_ms, offsets, summary, TestBroker};

async fn publish_range(
    client: &Client,
    topic: &str,
    range: std::ops::Range<u64>,
) -> anyhow::Result<()> {
    for i in range {
        let stored = bounded("a publish ack", client.publish(topic, format!("m{i}"))).await?;
        assert_eq!(stored.offset, i, "offset of m{i}");
    }
    Ok(())
}

/// Publishes `range` pipelined (all in flight at once) from a task, so that
/// they race with the subscription's switch from replay to live.
fn publish_concurrently(
    client: &Client,
    topic: &'static str,
    range: std::ops::Range<u64>,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let client = client.clone();
    tokio::spawn(async move {
        let acks = futures_util::future::join_all(
            range
                .clone()
                .map(|i| client.publish(topic, format!("m{i}"))),
        )
        .await;
        for (i, ack) in range.zip(acks) {
            let stored = ack?;
            anyhow::ensure!(stored.offset == i, "m{i} stored at {}", stored.offset);
        }
        Ok(())
    })
}

fn assert_exact(got: &[sluice_client::Delivered], topic: &str, range: std::ops::Range<u64>) {
    let expected: Vec<_> = range
        .map(|i| (topic.to_owned(), i, format!("m{i}")))
        .collect();
    assert_eq!(summary(got), expected);
}

/// Nothing more is pending: the next message to arrive is the one published now.
async fn assert_next_is(
    client: &Client,
    sub: &mut Subscription,
    topic: &str,
    offset: u64,
) -> anyhow::Result<()> {
    let stored = client.publish(topic, "probe").await?;
    assert_eq!(stored.offset, offset);
    let next = collect(sub, 1, Duration::from_secs(10)).await;
    assert_eq!(
        summary(&next),
        vec![(topic.to_owned(), offset, "probe".to_owned())],
        "expected nothing between the last message and the probe"
    );
    Ok(())
}

#[tokio::test]
async fn replay_from_an_offset_then_follow_live() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    publish_range(&client, "replay.offset", 0..10).await?;

    let reader = broker.client().await?;
    let mut sub = reader
        .subscribe("replay.offset", StartPosition::Offset(4))
        .await?;
    let live = publish_concurrently(&client, "replay.offset", 10..60);
    let got = collect(&mut sub, 56, Duration::from_secs(10)).await;
    bounded("the live publisher", live).await??;
    assert_exact(&got, "replay.offset", 4..60);
    assert_next_is(&client, &mut sub, "replay.offset", 60).await
}

#[tokio::test]
async fn replay_from_earliest_then_follow_live() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    publish_range(&client, "replay.earliest", 0..25).await?;

    let reader = broker.client().await?;
    let mut sub = reader
        .subscribe("replay.earliest", StartPosition::Earliest)
        .await?;
    let live = publish_concurrently(&client, "replay.earliest", 25..100);
    let got = collect(&mut sub, 100, Duration::from_secs(10)).await;
    bounded("the live publisher", live).await??;
    assert_exact(&got, "replay.earliest", 0..100);
    assert_next_is(&client, &mut sub, "replay.earliest", 100).await
}

#[tokio::test]
async fn replay_from_a_timestamp() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    publish_range(&client, "replay.time", 0..5).await?;
    // Stored timestamps are milliseconds: keep clear of the mark on both
    // sides. Letting the clock move is the point, not a wait for an event.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mark = now_ms();
    tokio::time::sleep(Duration::from_millis(20)).await;
    publish_range(&client, "replay.time", 5..10).await?;

    let mut sub = client
        .subscribe("replay.time", StartPosition::Timestamp(mark))
        .await?;
    let got = collect(&mut sub, 5, Duration::from_secs(10)).await;
    assert_exact(&got, "replay.time", 5..10);
    assert!(got.iter().all(|m| m.timestamp_ms >= mark), "{got:?}");
    assert_next_is(&client, &mut sub, "replay.time", 10).await?;

    let before = client
        .fetch("replay.time", StartPosition::Timestamp(mark), 100)
        .await?;
    assert_eq!(offsets(&before.messages), (5..11).collect::<Vec<_>>());
    let stored = client
        .fetch("replay.time", StartPosition::Earliest, 100)
        .await?;
    assert!(
        stored.messages[..5].iter().all(|m| m.timestamp_ms < mark),
        "{:?}",
        stored.messages
    );

    // From the start of time: everything; from the future: nothing until new messages.
    let all = client
        .fetch("replay.time", StartPosition::Timestamp(0), 100)
        .await?;
    assert_eq!(offsets(&all.messages), (0..11).collect::<Vec<_>>());
    let mut future = client
        .subscribe("replay.time", StartPosition::Timestamp(now_ms() + 60_000))
        .await?;
    let later = client
        .fetch(
            "replay.time",
            StartPosition::Timestamp(now_ms() + 60_000),
            100,
        )
        .await?;
    assert!(later.messages.is_empty(), "{:?}", later.messages);
    assert_eq!(later.next_offset, 11);
    assert_next_is(&client, &mut future, "replay.time", 11).await
}

#[tokio::test]
async fn a_pattern_replays_every_matching_topic_in_order() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    for i in 0..10u64 {
        client.publish("replay.p.a", format!("m{i}")).await?;
        client.publish("replay.p.b", format!("m{i}")).await?;
    }
    client.publish("replay.other", "x").await?;
    let mut sub = client
        .subscribe("replay.p.*", StartPosition::Offset(3))
        .await?;
    let live = publish_concurrently(&client, "replay.p.b", 10..20);
    let got = collect(&mut sub, 7 + 17, Duration::from_secs(10)).await;
    bounded("the live publisher", live).await??;
    let of = |topic: &str| -> Vec<_> { got.iter().filter(|m| m.topic == topic).cloned().collect() };
    assert_exact(&of("replay.p.a"), "replay.p.a", 3..10);
    assert_exact(&of("replay.p.b"), "replay.p.b", 3..20);
    assert_eq!(got.len(), 24, "only matching topics: {:?}", summary(&got));
    Ok(())
}

#[tokio::test]
async fn fetch_reads_ranges_and_reports_offsets() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    publish_range(&client, "fetch.t", 0..20).await?;

    let batch = client.fetch("fetch.t", StartPosition::Offset(3), 4).await?;
    assert_exact(&batch.messages, "fetch.t", 3..7);
    assert_eq!((batch.next_offset, batch.end_offset), (7, 20));

    let batch = client
        .fetch("fetch.t", StartPosition::Offset(batch.next_offset), 1000)
        .await?;
    assert_exact(&batch.messages, "fetch.t", 7..20);
    assert_eq!((batch.next_offset, batch.end_offset), (20, 20));

    let batch = client.fetch("fetch.t", StartPosition::Earliest, 5).await?;
    assert_exact(&batch.messages, "fetch.t", 0..5);
    assert_eq!((batch.next_offset, batch.end_offset), (5, 20));

    for at_end in [StartPosition::Latest, StartPosition::Offset(20)] {
        let batch = client.fetch("fetch.t", at_end, 10).await?;
        assert!(
            batch.messages.is_empty(),
            "{at_end:?}: {:?}",
            batch.messages
        );
        assert_eq!(
            (batch.next_offset, batch.end_offset),
            (20, 20),
            "{at_end:?}"
        );
    }

    assert_exact(
        &fetch_all(&client, "fetch.t", StartPosition::Earliest).await?,
        "fetch.t",
        0..20,
    );

    let err = client
        .fetch("fetch.none", StartPosition::Earliest, 10)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TopicNotFound), "{err}");
    let err = client
        .fetch("fetch.t", StartPosition::Earliest, 0)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument), "{err}");
    assert!(err.to_string().contains("max_messages"), "{err}");
    Ok(())
}

#[tokio::test]
async fn timestamps_are_found_across_segments() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    client.create_topic("replay.seg", None, Some(4096)).await?;
    // Five bursts of 40 messages of ~150 bytes (each burst spans segments),
    // with a time mark between bursts, 20 ms clear of both (timestamps are
    // milliseconds: letting the clock move is the point of these sleeps).
    let mut marks = Vec::new();
    for burst in 0..5u64 {
        if burst > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            marks.push((now_ms(), burst * 40));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let messages = (0..40)
            .map(|i| {
                sluice_client::Message::new(
                    "replay.seg",
                    format!("m{}{}", burst * 40 + i, " ".repeat(140)),
                )
            })
            .collect();
        client.publish_batch(messages).await?;
    }
    let info = client.topic_info("replay.seg").await?;
    assert!(info.segments >= 5, "{info:?}");
    for (mark, first) in marks {
        let batch = client
            .fetch("replay.seg", StartPosition::Timestamp(mark), 1)
            .await?;
        assert_eq!(
            offsets(&batch.messages),
            vec![first],
            "fetch from the mark before offset {first}"
        );
        let mut sub = client
            .subscribe("replay.seg", StartPosition::Timestamp(mark))
            .await?;
        let got = collect(&mut sub, (200 - first) as usize, Duration::from_secs(10)).await;
        assert_eq!(offsets(&got), (first..200).collect::<Vec<_>>());
    }
    Ok(())
}
