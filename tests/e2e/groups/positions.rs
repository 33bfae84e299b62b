//! Where a group reads: a pattern group created at `Latest`, topics created
//! later, a reset to either end; and the listing of groups with their lag.

use std::time::Duration;

use sluice_client::{ConsumeOptions, ErrorCode, StartPosition};
use sluice_tests::TestBroker;

use super::{
    ack_all, drain, expect_code, next, offsets_of, publish_n, recv_n, text, totals, wait_members,
    SOON,
};

/// A group on a pattern created at `Latest` skips what its topics hold
/// already, and reads topics created later from their start.
#[tokio::test]
async fn a_pattern_group_starts_at_latest_and_reads_new_topics_from_the_start() -> anyhow::Result<()>
{
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    publish_n(&client, "evt.a", 3).await?;
    let mut consumer = client
        .consume(
            "evt.>",
            "late",
            ConsumeOptions::default().start(StartPosition::Latest),
        )
        .await?;
    wait_members(&client, "late", 1).await;
    client.publish("evt.a", "new on a").await?;
    client.publish("evt.b.x", "first on b").await?;
    client.publish("evt.b.x", "second on b").await?;
    let got = recv_n(&mut consumer, 3, SOON).await;
    ack_all(&got).await?;
    let mut seen: Vec<(String, u64, String)> = got
        .iter()
        .map(|d| (d.topic.clone(), d.offset, text(d)))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("evt.a".to_owned(), 3, "new on a".to_owned()),
            ("evt.b.x".to_owned(), 0, "first on b".to_owned()),
            ("evt.b.x".to_owned(), 1, "second on b".to_owned()),
        ]
    );
    assert!(drain(&mut consumer, Duration::from_millis(300))
        .await
        .is_empty());
    let info = client.group_info("late").await?;
    assert_eq!(info.topics.len(), 2, "{info:?}");
    assert_eq!(totals(&info), (0, 0), "{info:?}");
    Ok(())
}

#[tokio::test]
async fn reset_replays_and_list_shows_groups() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    publish_n(&client, "reset.t", 10).await?;
    let mut done = client
        .consume("reset.t", "done", ConsumeOptions::default())
        .await?;
    let all = recv_n(&mut done, 10, SOON).await;
    ack_all(&all).await?;
    let other = broker.client().await?;
    let mut lagging = other
        .consume(
            "reset.t",
            "lagging",
            ConsumeOptions::default()
                .max_in_flight(2)
                .ack_wait(Duration::from_secs(30)),
        )
        .await?;
    let held = recv_n(&mut lagging, 2, SOON).await;

    let groups = client.list_groups().await?;
    let listed: Vec<(String, usize, (u64, u64))> = groups
        .iter()
        .map(|g| (g.name.clone(), g.members.len(), totals(g)))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("done".to_owned(), 1, (0, 0)),
            ("lagging".to_owned(), 1, (8, 2)),
        ]
    );
    let lagging_info = &groups[1];
    assert_eq!(lagging_info.members[0].in_flight, 2, "{lagging_info:?}");
    assert_eq!(lagging_info.members[0].max_in_flight, 2);
    assert_eq!(lagging_info.members[0].client, "sluice-e2e");

    // Back to the start: everything is delivered again.
    // (The member has credit: the answer may already count redeliveries.)
    let info = client.reset_group("done", StartPosition::Earliest).await?;
    let (lag, pending) = totals(&info);
    assert_eq!(
        (info.topics[0].ack_floor, lag + pending),
        (0, 10),
        "{info:?}"
    );
    let again = recv_n(&mut done, 10, SOON).await;
    assert_eq!(offsets_of(&again), (0..10).collect());
    ack_all(&again).await?;
    assert!(drain(&mut done, Duration::from_millis(300))
        .await
        .is_empty());
    let info = client.group_info("done").await?;
    assert_eq!(totals(&info), (0, 0), "{info:?}");

    // To the end: what was pending is forgotten.
    let info = client.reset_group("lagging", StartPosition::Latest).await?;
    assert_eq!(totals(&info), (0, 0), "{info:?}");
    expect_code(
        held[0].ack().await,
        ErrorCode::UnknownDelivery,
        "ack of a delivery forgotten by a reset",
    );
    client.publish("reset.t", "after the reset").await?;
    let d = next(&mut lagging, SOON).await;
    assert_eq!((d.offset, text(&d).as_str()), (10, "after the reset"));
    d.ack().await?;

    // A group without members is still listed.
    drop(lagging);
    drop(held);
    other.close().await;
    wait_members(&client, "lagging", 0).await;
    let groups = client.list_groups().await?;
    assert_eq!(
        groups
            .iter()
            .map(|g| (g.name.as_str(), g.members.len()))
            .collect::<Vec<_>>(),
        vec![("done", 1), ("lagging", 0)]
    );
    Ok(())
}
