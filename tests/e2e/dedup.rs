//! Publish de-duplication: a message id seen within the topic's window is
//! acked with the first offset and stored once.

use std::time::Duration;

use sluice_client::{CreateTopic, Message, StartPosition};
use sluice_tests::{fetch_all, TestBroker};

#[tokio::test]
async fn the_same_id_twice_is_stored_once_with_the_same_offset() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    client.publish("pay.in", "before").await?;
    let first = client
        .publish_message(Message::new("pay.in", "charge 10").id("charge-1"))
        .await?;
    let again = client
        .publish_message(Message::new("pay.in", "charge 10 (retry)").id("charge-1"))
        .await?;
    assert_eq!(first.offset, 1);
    assert!(!first.duplicate);
    assert_eq!(again.offset, first.offset);
    assert!(again.duplicate);
    let stored = fetch_all(&client, "pay.in", StartPosition::Earliest).await?;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].payload.as_ref(), b"charge 10");
    assert_eq!(stored[1].id.as_deref(), Some("charge-1"));
    // Another id, or no id, is stored as usual; ids are per topic.
    let other = client
        .publish_message(Message::new("pay.in", "charge 20").id("charge-2"))
        .await?;
    assert_eq!((other.offset, other.duplicate), (2, false));
    let elsewhere = client
        .publish_message(Message::new("pay.out", "refund").id("charge-1"))
        .await?;
    assert_eq!((elsewhere.offset, elsewhere.duplicate), (0, false));
    Ok(())
}

#[tokio::test]
async fn duplicates_inside_one_batch_get_the_first_offset() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    let ack = client
        .publish_batch(vec![
            Message::new("batch.t", "a").id("x"),
            Message::new("batch.t", "b"),
            Message::new("batch.t", "a again").id("x"),
            Message::new("batch.t", "c").id("y"),
        ])
        .await?;
    let places: Vec<(u64, bool)> = ack
        .outcomes
        .iter()
        .map(|o| {
            let sluice_client::MessageOutcome::Stored(places) = o else {
                panic!("not stored: {o:?}");
            };
            (places[0].offset, places[0].duplicate)
        })
        .collect();
    assert_eq!(places, vec![(0, false), (1, false), (0, true), (2, false)]);
    // A whole batch of duplicates stores nothing and is still acked.
    let ack = client
        .publish_batch(vec![
            Message::new("batch.t", "a").id("x"),
            Message::new("batch.t", "c").id("y"),
        ])
        .await?;
    assert_eq!(ack.outcomes.len(), 2);
    assert_eq!(client.topic_info("batch.t").await?.messages, 3);
    Ok(())
}

#[tokio::test]
async fn after_the_window_the_id_is_stored_again() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    let info = client
        .create_topic_with(CreateTopic {
            name: "short.window".into(),
            retention: None,
            segment_bytes: None,
            dedup_window_ms: Some(300),
            default_ttl_ms: None,
            dead_letter_expired: None,
        })
        .await?;
    assert_eq!(info.dedup_window_ms, 300);
    let first = client
        .publish_message(Message::new("short.window", "1").id("same"))
        .await?;
    let dup = client
        .publish_message(Message::new("short.window", "1").id("same"))
        .await?;
    assert!(dup.duplicate);
    // Letting the 300 ms window run out is the point of the test, not a wait
    // for something to happen: nothing marks its end but a publish, which is
    // what is asserted next. 100 ms of margin; a slow machine only adds more.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let later = client
        .publish_message(Message::new("short.window", "1").id("same"))
        .await?;
    assert!(!later.duplicate);
    assert_eq!(later.offset, first.offset + 1);
    Ok(())
}

#[tokio::test]
async fn the_window_survives_a_restart() -> anyhow::Result<()> {
    let mut broker = TestBroker::start().await?;
    let client = broker.client().await?;
    let first = client
        .publish_message(Message::new("durable.ids", "once").id("order-7"))
        .await?;
    drop(client);
    broker.restart().await?;
    let client = broker.client().await?;
    let again = client
        .publish_message(Message::new("durable.ids", "once").id("order-7"))
        .await?;
    assert_eq!((again.offset, again.duplicate), (first.offset, true));
    assert_eq!(client.topic_info("durable.ids").await?.messages, 1);
    Ok(())
}

#[tokio::test]
async fn a_zero_window_turns_deduplication_off() -> anyhow::Result<()> {
    let broker = TestBroker::start_with(|c| c.topics.dedup_window = Duration::ZERO).await?;
    let client = broker.client().await?;
    let a = client
        .publish_message(Message::new("no.dedup", "1").id("i"))
        .await?;
    let b = client
        .publish_message(Message::new("no.dedup", "1").id("i"))
        .await?;
    assert_eq!((a.offset, b.offset, b.duplicate), (0, 1, false));
    Ok(())
}
