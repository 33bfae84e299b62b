//! Bugs found in review, each pinned by a test.

use std::time::Duration;

use sluice_client::{ConsumeOptions, StartPosition};
use sluice_tests::{fetch_all, TestBroker};

#[tokio::test]
async fn a_topic_recreated_right_after_delete_starts_empty_and_stays() -> anyhow::Result<()> {
    let mut broker = TestBroker::start().await?;
    let client = broker.client().await?;
    for n in 0..5 {
        client.publish("again.t", format!("old {n}")).await?;
    }
    client.delete_topic("again.t").await?;
    let fresh = client.publish("again.t", "new").await?;
    assert_eq!(fresh.offset, 0);
    drop(client);
    broker.restart().await?;
    let client = broker.client().await?;
    let stored = fetch_all(&client, "again.t", StartPosition::Earliest).await?;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].payload.as_ref(), b"new");
    Ok(())
}

#[tokio::test]
async fn group_dead_letters_are_stored_even_without_auto_create() -> anyhow::Result<()> {
    let broker = TestBroker::start_with(|c| c.topics.auto_create = false).await?;
    let client = broker.client().await?;
    client.create_topic("jobs", None, None).await?;
    client.publish("jobs", "poison").await?;
    let mut consumer = client
        .consume("jobs", "workers", ConsumeOptions::default().max_deliver(1))
        .await?;
    let delivery = tokio::time::timeout(Duration::from_secs(5), consumer.recv())
        .await?
        .expect("a delivery")?;
    delivery.nack(None).await?;
    let dead = sluice_tests::wait_until("the dead letter", Duration::from_secs(5), || async {
        let stored = fetch_all(&client, "dlq.jobs", StartPosition::Earliest).await?;
        if stored.len() == 1 {
            Ok(stored)
        } else {
            Err(anyhow::anyhow!("{} dead letters", stored.len()))
        }
    })
    .await;
    assert_eq!(dead[0].payload.as_ref(), b"poison");
    let info = client.group_info("workers").await?;
    assert_eq!(info.dead_lettered, 1);
    assert_eq!(info.topics[0].pending, 0);
    Ok(())
}
