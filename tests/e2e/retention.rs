//! Retention removes whole old segments, by size and by age.

use std::time::Duration;

use sluice_client::{Client, RetentionSpec, StartPosition, TopicInfo};
use sluice_tests::{fetch_all, offsets, wait_until, TestBroker};

const SEGMENT_BYTES: u64 = 4096;
const MESSAGES: u64 = 200;

async fn broker() -> anyhow::Result<TestBroker> {
    TestBroker::start_with(|c| c.storage.retention_check_interval = Duration::from_millis(100))
        .await
}

/// Publishes `MESSAGES` messages of about 200 bytes (batches of 10) to
/// `topic`, and the same to `control`, a topic without retention: about ten
/// segments of 4 KiB each. Returns the control topic's info.
async fn fill(client: &Client, topic: &str, control: &str) -> anyhow::Result<TopicInfo> {
    client
        .create_topic(control, None, Some(SEGMENT_BYTES))
        .await?;
    fill_one(client, control).await?;
    fill_one(client, topic).await?;
    let info = client.topic_info(control).await?;
    assert!(info.segments >= 5, "expected several segments: {info:?}");
    Ok(info)
}

async fn fill_one(client: &Client, topic: &str) -> anyhow::Result<()> {
    for batch in 0..MESSAGES / 10 {
        let messages = (0..10)
            .map(|i| {
                sluice_client::Message::new(
                    topic,
                    format!("{:04}{}", batch * 10 + i, "r".repeat(196)),
                )
            })
            .collect();
        client.publish_batch(messages).await?;
    }
    assert_eq!(client.topic_info(topic).await?.next_offset, MESSAGES);
    Ok(())
}

/// The stored messages run from `info.start_offset` to the end, intact.
async fn check_tail(client: &Client, topic: &str, info: &TopicInfo) -> anyhow::Result<()> {
    let stored = fetch_all(client, topic, StartPosition::Earliest).await?;
    assert_eq!(
        offsets(&stored),
        (info.start_offset..MESSAGES).collect::<Vec<_>>()
    );
    for m in &stored {
        assert_eq!(&m.payload[..4], format!("{:04}", m.offset).as_bytes());
    }
    // Below the start offset there is nothing any more: reads start at the start.
    let from_zero = client.fetch(topic, StartPosition::Offset(0), 5).await?;
    assert_eq!(from_zero.messages[0].offset, info.start_offset);
    let mut sub = client.subscribe(topic, StartPosition::Earliest).await?;
    let replayed = sluice_tests::collect(
        &mut sub,
        (MESSAGES - info.start_offset) as usize,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(replayed, stored);
    // And the topic still takes new messages at its end.
    assert_eq!(client.publish(topic, "new").await?.offset, MESSAGES);
    Ok(())
}

#[tokio::test]
async fn retention_by_size_removes_the_oldest_segments() -> anyhow::Result<()> {
    let broker = broker().await?;
    let client = broker.client().await?;
    let retention = RetentionSpec {
        max_bytes: Some(3 * SEGMENT_BYTES),
        ..RetentionSpec::default()
    };
    client
        .create_topic("ret.size", Some(retention), Some(SEGMENT_BYTES))
        .await?;
    let full = fill(&client, "ret.size", "ret.size-control").await?;

    // Retention runs every 100 ms, also while the topic is being filled, so
    // wait for the pass that sees the whole topic, not just the first one.
    let info = wait_until("retention by size", Duration::from_secs(10), || async {
        let info = client.topic_info("ret.size").await?;
        if info.start_offset > 0 && info.segments < full.segments && info.bytes < 5 * SEGMENT_BYTES
        {
            Ok(info)
        } else {
            Err(anyhow::anyhow!("{info:?}"))
        }
    })
    .await;
    // What is left is at least the limit (only whole segments go) and not a
    // whole segment more than needed.
    assert!(info.bytes >= 3 * SEGMENT_BYTES, "{info:?}");
    assert!(info.bytes < 5 * SEGMENT_BYTES, "{info:?}");
    assert!(info.bytes < full.bytes, "{info:?}");
    assert_eq!(info.messages, MESSAGES - info.start_offset);
    check_tail(&client, "ret.size", &info).await?;

    // What retention removed stays removed after a restart, and offsets go on.
    let mut broker = broker;
    client.close().await;
    broker.restart().await?;
    let client = broker.client().await?;
    let after = client.topic_info("ret.size").await?;
    assert!(after.start_offset >= info.start_offset, "{after:?}");
    assert_eq!(after.next_offset, MESSAGES + 1);
    let stored = fetch_all(&client, "ret.size", StartPosition::Earliest).await?;
    assert_eq!(
        offsets(&stored),
        (after.start_offset..MESSAGES + 1).collect::<Vec<_>>()
    );
    assert_eq!(after.retention, retention, "the topic's retention is kept");
    assert_eq!(
        client.publish("ret.size", "newer").await?.offset,
        MESSAGES + 1
    );
    Ok(())
}

#[tokio::test]
async fn retention_by_message_count_keeps_at_least_that_many() -> anyhow::Result<()> {
    let broker = broker().await?;
    let client = broker.client().await?;
    let retention = RetentionSpec {
        max_messages: Some(50),
        ..RetentionSpec::default()
    };
    client
        .create_topic("ret.count", Some(retention), Some(SEGMENT_BYTES))
        .await?;
    let full = fill(&client, "ret.count", "ret.count-control").await?;
    let info = wait_until(
        "retention by message count",
        Duration::from_secs(10),
        || async {
            let info = client.topic_info("ret.count").await?;
            // Wait for the pass that sees the whole topic (retention also
            // runs while it is being filled).
            if info.start_offset > 0 && info.segments < full.segments && info.messages < 100 {
                Ok(info)
            } else {
                Err(anyhow::anyhow!("{info:?}"))
            }
        },
    )
    .await;
    assert!(info.messages >= 50, "{info:?}");
    assert!(info.messages < 100, "{info:?}");
    check_tail(&client, "ret.count", &info).await
}

#[tokio::test]
async fn retention_by_age_removes_segments_whose_messages_are_old() -> anyhow::Result<()> {
    let broker = broker().await?;
    let client = broker.client().await?;
    let retention = RetentionSpec {
        max_age_ms: Some(500),
        ..RetentionSpec::default()
    };
    client
        .create_topic("ret.age", Some(retention), Some(SEGMENT_BYTES))
        .await?;
    let full = fill(&client, "ret.age", "ret.none").await?;

    // Every sealed segment expires; the active one stays.
    let info = wait_until("retention by age", Duration::from_secs(10), || async {
        let info = client.topic_info("ret.age").await?;
        if info.segments == 1 {
            Ok(info)
        } else {
            Err(anyhow::anyhow!("{info:?}"))
        }
    })
    .await;
    assert!(
        info.start_offset > 0 && info.start_offset < MESSAGES,
        "{info:?}"
    );
    assert!(info.bytes < full.bytes);
    check_tail(&client, "ret.age", &info).await?;

    // The topic without limits beside it keeps everything.
    let none = client.topic_info("ret.none").await?;
    assert_eq!(
        (none.start_offset, none.segments),
        (0, full.segments),
        "{none:?}"
    );
    Ok(())
}
