//! Redelivery timing: the ack wait, `in_progress` holding it off, and a nack
//! with its own delay or the group's backoff.

use std::time::{Duration, Instant};

use sluice_client::{ConsumeOptions, ErrorCode};
use sluice_tests::TestBroker;

use super::{brief, drain, expect_code, next, totals, SOON};

#[tokio::test]
async fn unacked_messages_come_back_after_the_ack_wait() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    client.publish("slow.t", "job").await?;
    let ack_wait = Duration::from_millis(300);
    let mut consumer = client
        .consume(
            "slow.t",
            "slow",
            ConsumeOptions::default()
                .ack_wait(ack_wait)
                .backoff([Duration::from_millis(10)]),
        )
        .await?;
    let first = next(&mut consumer, SOON).await;
    let received = Instant::now();
    assert_eq!(first.attempt, 1);
    let second = next(&mut consumer, SOON).await;
    assert!(received.elapsed() >= ack_wait, "{:?}", received.elapsed());
    assert_eq!((second.offset, second.attempt), (0, 2));
    second.ack().await?;
    // The first delivery is the same message: it is settled now.
    expect_code(
        first.ack().await,
        ErrorCode::UnknownDelivery,
        "ack after the redelivery was acked",
    );
    let info = client.group_info("slow").await?;
    assert_eq!((info.redeliveries, totals(&info)), (1, (0, 0)), "{info:?}");
    Ok(())
}

#[tokio::test]
async fn in_progress_holds_off_the_redelivery() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    client.publish("long.t", "long job").await?;
    let ack_wait = Duration::from_millis(1000);
    let mut consumer = client
        .consume(
            "long.t",
            "long",
            ConsumeOptions::default()
                .ack_wait(ack_wait)
                .backoff([Duration::from_millis(10)]),
        )
        .await?;
    let delivery = next(&mut consumer, SOON).await;
    assert_eq!(delivery.attempt, 1);
    // Working for 2.5 ack waits, saying so every fifth of one.
    let until = Instant::now() + ack_wait * 5 / 2;
    while Instant::now() < until {
        let got = drain(&mut consumer, ack_wait / 5).await;
        assert!(
            got.is_empty(),
            "redelivered while in progress: {:?}",
            brief(&got)
        );
        delivery.in_progress().await?;
    }
    // Silent now: the ack wait runs out.
    let again = next(&mut consumer, SOON).await;
    assert_eq!((again.offset, again.attempt), (0, 2));
    again.ack().await?;
    Ok(())
}

#[tokio::test]
async fn a_nack_with_a_delay_uses_that_delay() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    client.publish("later.t", "try later").await?;
    let mut consumer = client
        .consume(
            "later.t",
            "later",
            ConsumeOptions::default().backoff([Duration::from_millis(10)]),
        )
        .await?;
    let first = next(&mut consumer, SOON).await;
    let received = Instant::now();
    first.nack(Some(Duration::from_millis(500))).await?;
    let again = next(&mut consumer, SOON).await;
    assert!(
        received.elapsed() >= Duration::from_millis(500),
        "redelivered {:?} after a nack of 500 ms",
        received.elapsed()
    );
    assert_eq!((again.offset, again.attempt), (0, 2));
    // Without a delay the group's backoff applies.
    again.nack(None).await?;
    let third = next(&mut consumer, SOON).await;
    assert_eq!(third.attempt, 3);
    third.ack().await?;
    Ok(())
}
