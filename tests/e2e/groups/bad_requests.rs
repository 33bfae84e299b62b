//! Bad group requests: settling twice, out-of-range options, invalid or
//! unknown names; each is refused with its code and the connection keeps
//! working.

use std::time::Duration;

use sluice_client::{Client, ConsumeOptions, Consumer, ErrorCode, StartPosition};
use sluice_tests::TestBroker;

use super::{expect_code, next, text, SOON};

/// After a refusal: the connection works and another consumer on it still
/// receives.
async fn still_works(
    client: &Client,
    witness: &mut Consumer,
    round: &mut u64,
    what: &str,
) -> anyhow::Result<()> {
    client.ping().await?;
    client.publish("bad.ok", format!("after {what}")).await?;
    let d = next(witness, SOON).await;
    assert_eq!(
        (d.offset, text(&d)),
        (*round, format!("after {what}")),
        "{what}"
    );
    d.ack().await?;
    *round += 1;
    Ok(())
}

#[tokio::test]
async fn bad_group_requests_are_refused_and_the_connection_keeps_working() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    client.create_topic("bad.work", None, None).await?;
    client.create_topic("bad.ok", None, None).await?;
    let mut witness = client
        .consume("bad.ok", "witness", ConsumeOptions::default())
        .await?;
    let mut round = 0u64;

    let mut worker = client
        .consume("bad.work", "work", ConsumeOptions::default())
        .await?;
    client.publish("bad.work", "w0").await?;
    let d = next(&mut worker, SOON).await;
    d.ack().await?;
    expect_code(d.ack().await, ErrorCode::UnknownDelivery, "a second ack");
    expect_code(
        d.nack(None).await,
        ErrorCode::UnknownDelivery,
        "nack after ack",
    );
    expect_code(
        d.reject("late").await,
        ErrorCode::UnknownDelivery,
        "reject after ack",
    );
    still_works(&client, &mut witness, &mut round, "a second ack").await?;

    client.publish("bad.work", "w1").await?;
    let d = next(&mut worker, SOON).await;
    expect_code(
        d.nack(Some(Duration::from_secs(10 * 86_400))).await,
        ErrorCode::InvalidArgument,
        "a ten-day nack",
    );
    // Still pending: it can be acked.
    d.ack().await?;
    still_works(&client, &mut witness, &mut round, "a ten-day nack").await?;

    expect_code(
        client
            .consume("bad.work", "bad name", ConsumeOptions::default())
            .await,
        ErrorCode::InvalidGroup,
        "a group name with a space",
    );
    expect_code(
        client.group_info("bad name").await,
        ErrorCode::InvalidGroup,
        "info of an invalid group name",
    );
    still_works(&client, &mut witness, &mut round, "an invalid group name").await?;

    expect_code(
        client
            .consume("no.such.topic", "ghosts", ConsumeOptions::default())
            .await,
        ErrorCode::TopicNotFound,
        "a literal topic that does not exist",
    );
    still_works(&client, &mut witness, &mut round, "a missing topic").await?;

    expect_code(
        client.group_info("nope").await,
        ErrorCode::GroupNotFound,
        "info of an unknown group",
    );
    expect_code(
        client.reset_group("nope", StartPosition::Earliest).await,
        ErrorCode::GroupNotFound,
        "reset of an unknown group",
    );
    expect_code(
        client.group_info("ghosts").await,
        ErrorCode::GroupNotFound,
        "a refused consume creates no group",
    );
    still_works(&client, &mut witness, &mut round, "an unknown group").await?;

    expect_code(
        client
            .consume("bad.ok", "work", ConsumeOptions::default())
            .await,
        ErrorCode::InvalidArgument,
        "joining a group with another pattern",
    );
    for (what, options) in [
        ("max_deliver 0", ConsumeOptions::default().max_deliver(0)),
        (
            "ack_wait 0",
            ConsumeOptions::default().ack_wait(Duration::ZERO),
        ),
        (
            "max_in_flight 0",
            ConsumeOptions::default().max_in_flight(0),
        ),
        (
            "max_in_flight over the limit",
            ConsumeOptions::default().max_in_flight(u32::MAX),
        ),
    ] {
        expect_code(
            client.consume("bad.work", "fresh", options).await,
            ErrorCode::InvalidArgument,
            what,
        );
    }
    still_works(&client, &mut witness, &mut round, "invalid options").await?;

    // The worker still works too.
    client.publish("bad.work", "w2").await?;
    let d = next(&mut worker, SOON).await;
    assert_eq!((d.offset, d.attempt), (2, 1));
    d.ack().await?;
    Ok(())
}
