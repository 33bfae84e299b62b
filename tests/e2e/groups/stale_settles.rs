//! Stale settlements: a settlement answers one delivery, the one made to
//! its consumer as the attempt it names. Once that delivery is over (the
//! ack wait ran out, the message went to another member or came back as a
//! later attempt) it is refused with `stale_settle` and changes nothing:
//! the message's new holder settles it, and no redelivery follows.

use std::time::Duration;

use sluice_client::{Client, ConsumeOptions, ErrorCode, GroupInfo};
use sluice_tests::{wait_until, TestBroker};

use super::{expect_code, next, text, totals, SOON};

/// The in-flight count of each member, by member id.
fn in_flight(info: &GroupInfo) -> Vec<u32> {
    info.members.iter().map(|m| m.in_flight).collect()
}

/// Waits until the group's members hold `expected` deliveries each.
async fn wait_in_flight(client: &Client, group: &str, expected: &[u32]) {
    wait_until(
        &format!("the members of {group} to hold {expected:?}"),
        SOON,
        || async {
            let info = client.group_info(group).await.map_err(|e| e.to_string())?;
            if in_flight(&info) == expected {
                Ok(())
            } else {
                Err(format!("{info:?}"))
            }
        },
    )
    .await
}

#[tokio::test]
async fn a_stale_nack_from_an_old_member_is_refused_and_leaves_the_new_holder_alone(
) -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let old_client = broker.client().await?;
    let new_client = broker.client().await?;
    old_client.publish("stale.t", "job").await?;
    // The old member takes one delivery in all, so the redelivery can only
    // go to the new one.
    let options = ConsumeOptions::default()
        .ack_wait(Duration::from_millis(300))
        .backoff([Duration::from_millis(10)])
        .limit(1);
    let mut old = old_client.consume("stale.t", "stale", options).await?;
    let first = next(&mut old, SOON).await;
    assert_eq!((first.offset, first.attempt), (0, 1));

    // Its ack wait runs out: nobody holds the message, and a late ack is
    // refused (the message is due again).
    wait_in_flight(&old_client, "stale", &[0]).await;
    expect_code(
        first.ack().await,
        ErrorCode::StaleSettle,
        "an ack after the ack wait ran out",
    );

    let mut new = new_client
        .consume("stale.t", "stale", ConsumeOptions::default())
        .await?;
    let second = next(&mut new, SOON).await;
    assert_eq!(
        (second.offset, second.attempt, text(&second).as_str()),
        (0, 2, "job")
    );

    // The old member's settlements all answer attempt 1: refused, and the
    // message stays with the new member.
    let err = first.nack(Some(Duration::ZERO)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::StaleSettle), "{err}");
    assert!(
        err.to_string().contains("stale.t@0") && err.to_string().contains("attempt 2"),
        "{err}"
    );
    expect_code(
        first.reject("poison").await,
        ErrorCode::StaleSettle,
        "a stale reject",
    );
    expect_code(
        first.in_progress().await,
        ErrorCode::StaleSettle,
        "a stale in_progress",
    );
    let info = new_client.group_info("stale").await?;
    assert_eq!(in_flight(&info), [0, 1], "{info:?}");
    assert_eq!((info.redeliveries, info.dead_lettered), (1, 0), "{info:?}");

    // The new holder settles it; nothing comes back.
    second.ack().await?;
    let info = new_client.group_info("stale").await?;
    assert_eq!(totals(&info), (0, 0), "{info:?}");
    assert_eq!(info.topics[0].ack_floor, 1, "{info:?}");
    assert_eq!((info.redeliveries, info.dead_lettered), (1, 0), "{info:?}");
    expect_code(
        first.ack().await,
        ErrorCode::UnknownDelivery,
        "the old delivery once the new one was acked",
    );
    Ok(())
}

#[tokio::test]
async fn a_settlement_for_an_earlier_attempt_is_refused() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    client.publish("again.t", "job").await?;
    let mut consumer = client
        .consume(
            "again.t",
            "again",
            ConsumeOptions::default()
                .ack_wait(Duration::from_millis(300))
                .backoff([Duration::from_millis(10)]),
        )
        .await?;
    let first = next(&mut consumer, SOON).await;
    let second = next(&mut consumer, SOON).await;
    assert_eq!((second.offset, second.attempt), (0, 2));
    // Same member, same message, but attempt 1 is over.
    let err = first.nack(None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::StaleSettle), "{err}");
    assert!(err.to_string().contains("attempt 1"), "{err}");
    let info = client.group_info("again").await?;
    assert_eq!(in_flight(&info), [1], "{info:?}");
    second.ack().await?;
    let info = client.group_info("again").await?;
    assert_eq!((totals(&info), info.redeliveries), ((0, 0), 1), "{info:?}");
    Ok(())
}

#[tokio::test]
async fn a_dropped_consumer_cannot_settle_what_went_to_the_others() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    client.publish("gone.t", "job").await?;
    let mut leaving = client
        .consume("gone.t", "gone", ConsumeOptions::default())
        .await?;
    let first = next(&mut leaving, SOON).await;
    let mut staying = client
        .consume("gone.t", "gone", ConsumeOptions::default())
        .await?;
    drop(leaving);
    // Handed over at once, on the same connection.
    let second = next(&mut staying, SOON).await;
    assert_eq!((second.offset, second.attempt), (0, 2));
    expect_code(
        first.ack().await,
        ErrorCode::StaleSettle,
        "an ack through a consumer that left",
    );
    second.ack().await?;
    let info = client.group_info("gone").await?;
    assert_eq!(totals(&info), (0, 0), "{info:?}");
    Ok(())
}
