//! Publishing and live delivery: wildcard fan-out, batches, slow subscribers.

use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use sluice_client::{Message, MessageOutcome, StartPosition};
use sluice_tests::{
    bounded, bounded_for, collect, collect_until, fetch_all, offsets, summary, TestBroker,
};

type Seen = (String, u64, String);

#[tokio::test]
async fn wildcard_subscribers_receive_exactly_what_they_match_in_order() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let subscriber = broker.client().await?;
    let other = broker.client().await?;
    let publisher = broker.client().await?;
    let mut one_token = subscriber
        .subscribe("orders.*", StartPosition::Latest)
        .await?;
    let mut rest = subscriber
        .subscribe("orders.>", StartPosition::Latest)
        .await?;
    let mut exact = other.subscribe("orders.eu", StartPosition::Latest).await?;

    // Sequential publishes, each awaiting its ack, over topics that do not
    // exist yet (auto-created): per-topic offsets count from 0.
    let topics = [
        "orders.eu",
        "orders.us",
        "orders.eu.paris",
        "billing.x",
        "orders",
    ];
    let mut published: Vec<Seen> = Vec::new();
    for round in 0..3u64 {
        for topic in topics {
            let payload = format!("{topic} #{round}");
            let stored =
                bounded("a publish ack", publisher.publish(topic, payload.clone())).await?;
            assert_eq!(
                (stored.topic.as_str(), stored.offset),
                (topic, round),
                "ack of {payload}"
            );
            published.push((topic.to_owned(), stored.offset, payload));
        }
    }
    // A last message every subscriber matches marks the end of the stream.
    let end = bounded("a publish ack", publisher.publish("orders.eu", "end")).await?;
    published.push(("orders.eu".into(), end.offset, "end".into()));

    let expected = |matching: &[&str]| -> Vec<Seen> {
        published
            .iter()
            .filter(|(topic, ..)| matching.contains(&topic.as_str()))
            .cloned()
            .collect()
    };
    let is_end = |m: &sluice_client::Delivered| m.payload.as_ref() == b"end";
    let got = collect_until(&mut one_token, Duration::from_secs(10), is_end).await;
    assert_eq!(
        summary(&got),
        expected(&["orders.eu", "orders.us"]),
        "orders.*"
    );
    let got = collect_until(&mut rest, Duration::from_secs(10), is_end).await;
    assert_eq!(
        summary(&got),
        expected(&["orders.eu", "orders.us", "orders.eu.paris"]),
        "orders.>"
    );
    let got = collect_until(&mut exact, Duration::from_secs(10), is_end).await;
    assert_eq!(summary(&got), expected(&["orders.eu"]), "orders.eu");
    Ok(())
}

#[tokio::test]
async fn publish_batch_across_topics_acks_each_message_in_order() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    client.publish("batch.b", "b-before").await?;

    let ack = bounded(
        "a batch ack",
        client.publish_batch(vec![
            Message::new("batch.a", "a0"),
            Message::new("batch.b", "b1").key("customer-7"),
            Message::new("batch.a", "a1")
                .header("region", "eu")
                .header("region", "us"),
            Message::new("batch.b", "b2").id("msg-b2"),
            Message::new("batch.a", "a2"),
        ]),
    )
    .await?;
    let places = |ack: &sluice_client::PublishAck| -> Vec<(String, u64, bool)> {
        ack.outcomes
            .iter()
            .map(|outcome| {
                let MessageOutcome::Stored(at) = outcome else {
                    panic!("not stored: {outcome:?}");
                };
                assert_eq!(at.len(), 1, "one place per message: {at:?}");
                (at[0].topic.clone(), at[0].offset, at[0].duplicate)
            })
            .collect()
    };
    assert_eq!(
        places(&ack),
        vec![
            ("batch.a".into(), 0, false),
            ("batch.b".into(), 1, false),
            ("batch.a".into(), 1, false),
            ("batch.b".into(), 2, false),
            ("batch.a".into(), 2, false),
        ]
    );
    let ack = client
        .publish_batch(vec![
            Message::new("batch.b", "b3"),
            Message::new("batch.a", "a3"),
        ])
        .await?;
    assert_eq!(
        places(&ack),
        vec![("batch.b".into(), 3, false), ("batch.a".into(), 3, false)]
    );

    let a = fetch_all(&client, "batch.a", StartPosition::Earliest).await?;
    assert_eq!(
        summary(&a),
        (0..4)
            .map(|i| ("batch.a".to_owned(), i, format!("a{i}")))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        a[1].headers,
        vec![
            ("region".into(), "eu".into()),
            ("region".into(), "us".into())
        ]
    );
    let b = fetch_all(&client, "batch.b", StartPosition::Earliest).await?;
    assert_eq!(
        summary(&b)
            .into_iter()
            .map(|(_, o, p)| (o, p))
            .collect::<Vec<_>>(),
        vec![
            (0, "b-before".to_owned()),
            (1, "b1".to_owned()),
            (2, "b2".to_owned()),
            (3, "b3".to_owned())
        ]
    );
    assert_eq!(b[1].key.as_deref(), Some(&b"customer-7"[..]));
    assert_eq!(b[2].id.as_deref(), Some("msg-b2"));
    Ok(())
}

#[tokio::test]
async fn a_slow_live_subscriber_neither_blocks_publishers_nor_other_subscribers(
) -> anyhow::Result<()> {
    const COUNT: u64 = 2_000;
    const IN_FLIGHT: usize = 64;
    let broker = TestBroker::start_with(|c| c.limits.subscriber_buffer_messages = 16).await?;
    let setup = broker.client().await?;
    setup.create_topic("flood", None, None).await?;

    // Subscribes and then never reads until the end.
    let slow_client = broker.client().await?;
    let mut slow = slow_client
        .subscribe("flood", StartPosition::Latest)
        .await?;
    // Reads everything as it comes, on another connection.
    let normal_client = broker.client().await?;
    let mut normal = normal_client
        .subscribe("flood", StartPosition::Earliest)
        .await?;
    let reader =
        tokio::spawn(
            async move { collect(&mut normal, COUNT as usize, Duration::from_secs(30)).await },
        );

    let publisher = broker.client().await?;
    let started = Instant::now();
    let acked = bounded_for(
        "all publishes to be acked",
        Duration::from_secs(20),
        async {
            let mut in_flight = FuturesUnordered::new();
            let mut acked = Vec::new();
            for i in 0..COUNT {
                if in_flight.len() >= IN_FLIGHT {
                    acked.push(in_flight.next().await.expect("a publish in flight")?);
                }
                let publisher = publisher.clone();
                in_flight.push(async move {
                    publisher
                        .publish("flood", format!("m{i}"))
                        .await
                        .map(|s| s.offset)
                });
            }
            while let Some(result) = in_flight.next().await {
                acked.push(result?);
            }
            anyhow::Ok(acked)
        },
    )
    .await?;
    let elapsed = started.elapsed();
    let mut sorted = acked.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..COUNT).collect::<Vec<_>>(),
        "every publish acked once, offsets dense"
    );

    let got = bounded_for("the normal subscriber", Duration::from_secs(30), reader).await?;
    assert_eq!(
        offsets(&got),
        (0..COUNT).collect::<Vec<_>>(),
        "normal subscriber got everything in order"
    );
    for m in &got {
        assert!(m.payload.starts_with(b"m"), "payload {:?}", m.payload);
    }

    // Now the slow one reads: every message is either delivered (in order) or
    // reported dropped.
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while (received.len() as u64) + slow.dropped() < COUNT {
        assert!(
            Instant::now() < deadline,
            "slow subscriber: {} received + {} reported dropped of {COUNT} within 15 s",
            received.len(),
            slow.dropped()
        );
        match tokio::time::timeout(Duration::from_millis(300), slow.recv()).await {
            Ok(Some(Ok(m))) => received.push(m.offset),
            Ok(Some(Err(e))) => panic!("slow subscription failed: {e}"),
            Ok(None) => panic!("slow subscription ended after {} messages", received.len()),
            Err(_) => {} // dropped-only frames do not wake recv(); look again
        }
    }
    assert!(
        slow.dropped() > 0 || (received.len() as u64) < COUNT,
        "the slow subscriber neither missed nor was told of drops ({} received)",
        received.len()
    );
    assert!(
        received.windows(2).all(|w| w[0] < w[1]),
        "slow subscriber's messages are in order"
    );
    assert_eq!(
        received.len() as u64 + slow.dropped(),
        COUNT,
        "received + dropped"
    );
    eprintln!(
        "slow subscriber: {} received, {} dropped; {COUNT} publishes acked in {elapsed:?}",
        received.len(),
        slow.dropped()
    );
    Ok(())
}

#[tokio::test]
async fn the_largest_publishable_message_can_be_fetched_and_delivered() -> anyhow::Result<()> {
    const LIMIT: u32 = 64 * 1024;
    let broker = TestBroker::start_with(|c| c.limits.max_frame_bytes = LIMIT).await?;
    let client = broker.client().await?;
    assert_eq!(client.max_frame_bytes(), LIMIT);
    // The largest payload the client lets through (it checks the broker's
    // limit before sending); anything larger is refused locally.
    let mut size = LIMIT as usize;
    let stored = loop {
        match client.publish("big.t", vec![b'x'; size]).await {
            Ok(stored) => break stored,
            Err(sluice_client::ClientError::Codec(_)) if size > LIMIT as usize - 1024 => size -= 1,
            Err(e) => return Err(e.into()),
        }
    };
    assert_eq!(stored.offset, 0);
    let mut sub = client.subscribe("big.t", StartPosition::Earliest).await?;
    let got = collect(&mut sub, 1, Duration::from_secs(10)).await;
    assert_eq!(got[0].payload.len(), size, "delivered intact");
    let batch = client.fetch("big.t", StartPosition::Earliest, 10).await;
    let batch = batch
        .map_err(|e| anyhow::anyhow!("fetching the stored {size}-byte message failed: {e}"))?;
    assert_eq!(offsets(&batch.messages), vec![0]);
    assert_eq!(batch.messages[0].payload.len(), size, "fetched intact");
    Ok(())
}
