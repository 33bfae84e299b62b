//! Topics in cluster mode: what one node stores, every node serves.

use std::time::Duration;

use sluice_client::{ErrorCode, Message, StartPosition};
use sluice_tests::{collect, fetch_all, wait_until};

use super::Cluster;

const SOON: Duration = Duration::from_secs(10);

fn payloads(got: &[sluice_client::Delivered]) -> Vec<String> {
    got.iter()
        .map(|d| String::from_utf8_lossy(&d.payload).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_through_one_node_reaches_subscribers_of_the_other_in_order(
) -> anyhow::Result<()> {
    let cluster = Cluster::start(2).await?;
    let (a, b) = (cluster.client(0).await?, cluster.client(1).await?);
    a.create_topic("orders.eu", None, None).await?;
    // The topic is a replicated stream with a leader among the servers.
    let stream = sluice::nats::names::stream("orders.eu");
    let leader = cluster.nats.stream_leader(&stream).await?;
    assert!(leader.is_some(), "stream {stream} has no leader");
    // B learns of the topic from the cluster, not from its own work.
    wait_until("node B to see the topic", SOON, || async {
        match b.list_topics().await {
            Ok(t) if t.iter().any(|t| t.name == "orders.eu") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // Stored before anyone subscribed: replayed from the stream.
    for i in 0..5 {
        let stored = a.publish("orders.eu", format!("early-{i}")).await?;
        assert_eq!(stored.offset, i, "offsets are dense from 0");
    }
    let mut replay = b.subscribe("orders.>", StartPosition::Earliest).await?;
    let mut live = b.subscribe("orders.eu", StartPosition::Latest).await?;
    let got = collect(&mut replay, 5, SOON).await;
    assert_eq!(
        payloads(&got),
        (0..5).map(|i| format!("early-{i}")).collect::<Vec<_>>()
    );

    // Published through A while B's subscribers wait: live fan-out.
    let late: Vec<Message> = (0..50)
        .map(|i| Message::new("orders.eu", format!("late-{i}")).key(format!("k{}", i % 3)))
        .collect();
    let ack = a.publish_batch(late).await?;
    assert_eq!(ack.outcomes.len(), 50);
    let expected: Vec<String> = (0..50).map(|i| format!("late-{i}")).collect();
    let got = collect(&mut replay, 50, SOON).await;
    assert_eq!(
        payloads(&got),
        expected,
        "the replaying subscriber continues live"
    );
    assert_eq!(
        got.iter().map(|d| d.offset).collect::<Vec<_>>(),
        (5..55).collect::<Vec<u64>>(),
        "no gap, no repeat"
    );
    let got = collect(&mut live, 50, SOON).await;
    assert_eq!(
        payloads(&got),
        expected,
        "the live subscriber on B gets A's messages"
    );
    assert_eq!(
        got[1].key.as_deref(),
        Some(&b"k1"[..]),
        "keys survive the cluster"
    );

    // Replay from an offset, through either node.
    let from_a = fetch_all(&a, "orders.eu", StartPosition::Offset(50)).await?;
    let from_b = fetch_all(&b, "orders.eu", StartPosition::Offset(50)).await?;
    assert_eq!(payloads(&from_a), payloads(&from_b));
    assert_eq!(from_a.len(), 5);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_admin_on_one_node_is_seen_by_the_other_and_ids_deduplicate_across_nodes(
) -> anyhow::Result<()> {
    let cluster = Cluster::start(2).await?;
    let (a, b) = (cluster.client(0).await?, cluster.client(1).await?);

    a.create_topic("billing", None, None).await?;
    let exists = b
        .create_topic("billing", None, None)
        .await
        .expect_err("exists already");
    assert_eq!(exists.code(), Some(ErrorCode::TopicExists), "{exists}");

    // The same id through both nodes: stored once (a client retrying
    // through another node after a failover).
    let first = a
        .publish_message(Message::new("billing", "charge 1").id("charge-1"))
        .await?;
    let again = b
        .publish_message(Message::new("billing", "charge 1").id("charge-1"))
        .await?;
    assert!(!first.duplicate);
    assert!(again.duplicate, "the retry through node B is a duplicate");
    assert_eq!(again.offset, first.offset);
    let info = b.topic_info("billing").await?;
    assert_eq!(
        (info.start_offset, info.next_offset, info.messages),
        (0, 1, 1)
    );

    // Deleted through B: gone on A, and created again from offset 0.
    b.delete_topic("billing").await?;
    wait_until("node A to see the delete", SOON, || async {
        match a.topic_info("billing").await {
            Err(e) if e.code() == Some(ErrorCode::TopicNotFound) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    a.create_topic("billing", None, None).await?;
    // B learns of the new incarnation from the cluster.
    wait_until("node B to see the new topic", SOON, || async {
        match b.topic_info("billing").await {
            Ok(info) if info.next_offset == 0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let stored = b.publish("billing", "after").await?;
    assert_eq!(stored.offset, 0, "a new incarnation starts at 0");
    let all = fetch_all(&a, "billing", StartPosition::Earliest).await?;
    assert_eq!(payloads(&all), vec!["after"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_maps_to_stream_limits_and_replay_from_a_time_works_on_any_node(
) -> anyhow::Result<()> {
    let cluster = Cluster::start(2).await?;
    let (a, b) = (cluster.client(0).await?, cluster.client(1).await?);
    let retention = sluice_client::RetentionSpec {
        max_messages: Some(5),
        ..Default::default()
    };
    a.create_topic("metrics", Some(retention), None).await?;
    for i in 0..10 {
        a.publish("metrics", format!("m-{i}")).await?;
    }
    let info = b.topic_info("metrics").await?;
    assert_eq!(
        (info.start_offset, info.next_offset, info.messages),
        (5, 10, 5),
        "the oldest five are gone: {info:?}"
    );
    let kept = fetch_all(&b, "metrics", StartPosition::Earliest).await?;
    assert_eq!(
        kept.iter().map(|d| d.offset).collect::<Vec<_>>(),
        vec![5, 6, 7, 8, 9]
    );

    // A time between two publishes: replay starts at the first after it.
    a.create_topic("audit", None, None).await?;
    a.publish("audit", "before").await?;
    // Timestamps are milliseconds: make the next publish a later one.
    let marker = sluice_tests::now_ms() + 5;
    tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_millis(10)).await;
    a.publish("audit", "after").await?;
    let from_time = fetch_all(&b, "audit", StartPosition::Timestamp(marker)).await?;
    assert_eq!(payloads(&from_time), vec!["after"]);
    Ok(())
}
