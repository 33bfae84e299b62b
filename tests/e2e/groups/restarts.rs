//! Durability of group state: acks, pending messages and attempt counts
//! survive a clean restart and a SIGKILL of the broker process.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use sluice_client::{ConsumeOptions, Delivery, StartPosition};
use sluice_tests::{collect, ChildBroker, TestBroker, WAIT};

use super::{ack_all, brief, drain, header, next, offsets_of, publish_n, recv_n, totals, SOON};

#[tokio::test]
async fn group_state_survives_a_clean_restart() -> anyhow::Result<()> {
    let mut broker = TestBroker::start().await?;
    let client = broker.client().await?;
    publish_n(&client, "restart.t", 40).await?;
    let options = ConsumeOptions::default()
        .ack_wait(Duration::from_secs(30))
        .max_in_flight(20);
    let mut consumer = client
        .consume("restart.t", "survivors", options.clone())
        .await?;
    let first = recv_n(&mut consumer, 20, SOON).await;
    let (acked, held): (Vec<Delivery>, Vec<Delivery>) =
        first.into_iter().partition(|d| d.offset % 2 == 0);
    ack_all(&acked).await?;
    // The freed credits bring exactly ten more, held too; the last ten are
    // never delivered before the restart.
    let more = recv_n(&mut consumer, 10, SOON).await;
    assert_eq!(offsets_of(&more), (20..30).collect());
    assert!(drain(&mut consumer, Duration::from_millis(200))
        .await
        .is_empty());
    let acked = offsets_of(&acked);
    let held: BTreeSet<u64> = offsets_of(&held)
        .union(&offsets_of(&more))
        .copied()
        .collect();
    let info = client.group_info("survivors").await?;
    assert_eq!(totals(&info), (10, 20), "{info:?}");

    broker.restart().await?;
    drop(consumer);
    let client = broker.client().await?;
    let info = client.group_info("survivors").await?;
    assert_eq!(totals(&info), (10, 20), "after the restart: {info:?}");
    let mut consumer = client
        .consume("restart.t", "survivors", options.max_in_flight(100))
        .await?;
    let again = recv_n(&mut consumer, 30, WAIT).await;
    ack_all(&again).await?;
    let extra = drain(&mut consumer, Duration::from_millis(500)).await;
    assert!(extra.is_empty(), "unexpected: {:?}", brief(&extra));
    let got = offsets_of(&again);
    assert_eq!(got.len(), 30, "no duplicates: {:?}", brief(&again));
    assert!(
        got.is_disjoint(&acked),
        "acked messages came back: {:?}",
        brief(&again)
    );
    assert_eq!(
        got,
        (0..40).filter(|o| !acked.contains(o)).collect(),
        "every unacked message comes back"
    );
    for d in &again {
        let expected = if held.contains(&d.offset) { 2 } else { 1 };
        assert_eq!(d.attempt, expected, "{:?}", (d.offset, d.attempt));
    }
    let info = client.group_info("survivors").await?;
    assert_eq!(totals(&info), (0, 0), "{info:?}");
    Ok(())
}

#[tokio::test]
async fn group_state_survives_sigkill() -> anyhow::Result<()> {
    sluice_tests::init_tracing();
    let dir = tempfile::Builder::new()
        .prefix("sluice-e2e-groups-kill-")
        .tempdir()?;
    let binary = Path::new(env!("CARGO_BIN_EXE_sluice-under-test"));
    let mut broker =
        ChildBroker::start(binary, dir.path(), "[storage]\nfsync = \"always\"\n").await?;
    let client = broker.client().await?;
    publish_n(&client, "kill.t", 50).await?;
    let options = ConsumeOptions::default()
        .ack_wait(Duration::from_secs(30))
        .max_in_flight(30);
    let mut consumer = client.consume("kill.t", "killed", options.clone()).await?;
    let first = recv_n(&mut consumer, 30, SOON).await;
    let (acked, held): (Vec<Delivery>, Vec<Delivery>) =
        first.into_iter().partition(|d| d.offset % 2 == 1);
    ack_all(&acked).await?;
    // The freed credits bring exactly fifteen more, held too.
    let more = recv_n(&mut consumer, 15, SOON).await;
    assert_eq!(offsets_of(&more), (30..45).collect());
    let acked = offsets_of(&acked);
    let held: BTreeSet<u64> = offsets_of(&held)
        .union(&offsets_of(&more))
        .copied()
        .collect();
    assert_eq!((acked.len(), held.len()), (15, 30));

    broker.kill()?;
    client.connection().close(0u32.into(), b"broker killed");
    drop(consumer);
    drop(client);
    broker.restart().await?;

    let client = broker.client().await?;
    let mut consumer = client
        .consume("kill.t", "killed", options.max_in_flight(100))
        .await?;
    let again = recv_n(&mut consumer, 35, WAIT).await;
    ack_all(&again).await?;
    let extra = drain(&mut consumer, Duration::from_millis(500)).await;
    assert!(
        extra.is_empty(),
        "unexpected: {:?}; broker output:\n{}",
        brief(&extra),
        broker.log()
    );
    let got = offsets_of(&again);
    assert_eq!(got.len(), 35, "no duplicates: {:?}", brief(&again));
    assert!(
        got.is_disjoint(&acked),
        "acked came back: {:?}",
        brief(&again)
    );
    assert_eq!(got, (0..50).filter(|o| !acked.contains(o)).collect());
    for d in &again {
        let expected = if held.contains(&d.offset) { 2 } else { 1 };
        assert_eq!(d.attempt, expected, "{:?}", (d.offset, d.attempt));
    }
    let info = client.group_info("killed").await?;
    assert_eq!(totals(&info), (0, 0), "{info:?}");
    assert_eq!(info.topics[0].ack_floor, 50, "{info:?}");
    Ok(())
}

/// The same across a restart: attempt counts are journaled "so
/// `max_deliver` holds across restarts" (host/src/broker/group/state.rs).
#[tokio::test]
async fn max_deliver_holds_across_a_restart() -> anyhow::Result<()> {
    let mut broker = TestBroker::start().await?;
    let client = broker.client().await?;
    client.publish("md.restart", "fragile").await?;
    let options = ConsumeOptions::default()
        .max_deliver(2)
        .backoff([Duration::from_millis(10)])
        .ack_wait(Duration::from_secs(30));
    let mut consumer = client.consume("md.restart", "mdr", options.clone()).await?;
    next(&mut consumer, SOON).await.nack(None).await?;
    let last = next(&mut consumer, SOON).await;
    assert_eq!(last.attempt, 2);
    drop(last);
    drop(consumer);
    client.close().await;
    drop(client);

    broker.restart().await?;
    let client = broker.client().await?;
    let mut dead = client.subscribe("dlq.>", StartPosition::Earliest).await?;
    let mut consumer = client.consume("md.restart", "mdr", options).await?;
    let extra = drain(&mut consumer, Duration::from_millis(1000)).await;
    assert!(
        extra.is_empty(),
        "delivered beyond max_deliver 2 after a restart: {:?}",
        brief(&extra)
    );
    let letters = collect(&mut dead, 1, SOON).await;
    assert_eq!(header(&letters[0], "sluice-dlq-attempts"), Some("2"));
    Ok(())
}
