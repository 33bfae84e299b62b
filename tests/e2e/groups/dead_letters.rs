//! Poison messages: retries with backoff up to `max_deliver`, then the
//! dead-letter topic (the default one or a chosen one), with the reason; a
//! failure that is final stays final when its holder leaves.

use std::time::{Duration, Instant};

use sluice_client::{ConsumeOptions, ErrorCode, Message, StartPosition};
use sluice_tests::{collect, fetch_all, wait_until, TestBroker, WAIT};

use super::{brief, drain, expect_code, header, next, text, totals, SOON};

#[tokio::test]
async fn a_poison_message_is_retried_with_backoff_then_dead_lettered() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    let mut dead = client.subscribe("dlq.>", StartPosition::Earliest).await?;
    client
        .publish_message(
            Message::new("payments", "poison")
                .key("acct-1")
                .header("origin", "test"),
        )
        .await?;
    let backoff = [100u64, 200, 300];
    let mut consumer = client
        .consume(
            "payments",
            "billing",
            ConsumeOptions::default()
                .ack_wait(Duration::from_secs(30))
                .backoff(backoff.iter().map(|ms| Duration::from_millis(*ms)))
                .max_deliver(4),
        )
        .await?;

    let mut arrivals = Vec::new();
    for _ in 0..4 {
        let delivery = next(&mut consumer, SOON).await;
        arrivals.push((Instant::now(), delivery.attempt));
        assert_eq!((delivery.offset, text(&delivery).as_str()), (0, "poison"));
        delivery.nack(None).await?;
    }
    let attempts: Vec<u32> = arrivals.iter().map(|a| a.1).collect();
    assert_eq!(attempts, vec![1, 2, 3, 4]);
    for (i, pair) in arrivals.windows(2).enumerate() {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= Duration::from_millis(backoff[i]),
            "redelivery {} came {gap:?} after the nack; backoff is {} ms",
            i + 2,
            backoff[i]
        );
    }

    let letters = collect(&mut dead, 1, WAIT).await;
    let letter = &letters[0];
    assert_eq!(letter.topic, "dlq.payments");
    assert_eq!(text(letter), "poison");
    assert_eq!(letter.key.as_deref(), Some(&b"acct-1"[..]));
    assert_eq!(header(letter, "origin"), Some("test"), "{letter:?}");
    assert_eq!(header(letter, "sluice-dlq-topic"), Some("payments"));
    assert_eq!(header(letter, "sluice-dlq-offset"), Some("0"));
    assert_eq!(header(letter, "sluice-dlq-group"), Some("billing"));
    assert_eq!(header(letter, "sluice-dlq-attempts"), Some("4"));
    let reason = header(letter, "sluice-dlq-reason").unwrap_or_default();
    assert!(!reason.is_empty(), "{letter:?}");
    // Dead, not retried any more.
    assert!(
        drain(&mut consumer, Duration::from_millis(600))
            .await
            .is_empty(),
        "no delivery after the dead letter"
    );
    let info = client.group_info("billing").await?;
    assert_eq!((info.redeliveries, info.dead_lettered), (3, 1), "{info:?}");
    assert_eq!(totals(&info), (0, 0), "{info:?}");

    // A rejected message goes there at once, with the reason.
    client.publish("payments", "malformed").await?;
    let delivery = next(&mut consumer, SOON).await;
    assert_eq!((delivery.offset, delivery.attempt), (1, 1));
    delivery.reject("bad schema").await?;
    let letters = collect(&mut dead, 1, WAIT).await;
    let letter = &letters[0];
    assert_eq!(
        (letter.topic.as_str(), text(letter).as_str()),
        ("dlq.payments", "malformed")
    );
    assert_eq!(header(letter, "sluice-dlq-offset"), Some("1"));
    assert_eq!(header(letter, "sluice-dlq-attempts"), Some("1"));
    let reason = header(letter, "sluice-dlq-reason").unwrap_or_default();
    assert!(reason.contains("bad schema"), "reason {reason:?}");
    assert!(drain(&mut consumer, Duration::from_millis(300))
        .await
        .is_empty());
    let info = client.group_info("billing").await?;
    assert_eq!((info.dead_lettered, totals(&info)), (2, (0, 0)), "{info:?}");
    Ok(())
}

#[tokio::test]
async fn the_dead_letter_topic_can_be_chosen() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    client.publish("refunds", "r0").await?;
    client.publish("refunds", "r1").await?;
    let mut consumer = client
        .consume(
            "refunds",
            "audit",
            ConsumeOptions::default()
                .max_in_flight(1)
                .max_deliver(1)
                .dead_letter_topic("parked.refunds"),
        )
        .await?;
    // max_deliver 1: the first failure is final.
    let first = next(&mut consumer, SOON).await;
    first.nack(None).await?;
    let second = next(&mut consumer, SOON).await;
    assert_eq!((first.offset, second.offset), (0, 1));
    second.reject("no such account").await?;

    let parked = wait_until("two dead letters", WAIT, || async {
        let stored = fetch_all(&client, "parked.refunds", StartPosition::Earliest)
            .await
            .map_err(|e| e.to_string())?;
        if stored.len() >= 2 {
            Ok(stored)
        } else {
            Err(format!("{} stored", stored.len()))
        }
    })
    .await;
    assert_eq!(parked.len(), 2);
    assert_eq!(
        parked.iter().map(text).collect::<Vec<_>>(),
        vec!["r0", "r1"]
    );
    assert_eq!(header(&parked[0], "sluice-dlq-attempts"), Some("1"));
    assert_eq!(header(&parked[0], "sluice-dlq-group"), Some("audit"));
    assert_eq!(header(&parked[1], "sluice-dlq-offset"), Some("1"));
    assert!(header(&parked[1], "sluice-dlq-reason")
        .unwrap_or_default()
        .contains("no such account"));
    expect_code(
        client.topic_info("dlq.refunds").await,
        ErrorCode::TopicNotFound,
        "the default dead-letter topic is not used",
    );
    Ok(())
}

/// A message that already had `max_deliver` deliveries is not delivered
/// again when its holder leaves without settling it: that failure is final.
#[tokio::test]
async fn max_deliver_holds_when_the_last_holder_leaves() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    let mut dead = client.subscribe("dlq.>", StartPosition::Earliest).await?;
    client.publish("md.leave", "fragile").await?;
    let options = ConsumeOptions::default()
        .max_deliver(2)
        .backoff([Duration::from_millis(10)])
        .ack_wait(Duration::from_secs(30));
    let worker = broker.client().await?;
    let mut a = worker.consume("md.leave", "md", options.clone()).await?;
    next(&mut a, SOON).await.nack(None).await?;
    let last = next(&mut a, SOON).await;
    assert_eq!(last.attempt, 2);
    // The second (last allowed) delivery's holder goes away.
    let mut b = client.consume("md.leave", "md", options).await?;
    drop(last);
    drop(a);
    worker.close().await;
    drop(worker);
    let extra = drain(&mut b, Duration::from_millis(1000)).await;
    assert!(
        extra.is_empty(),
        "delivered beyond max_deliver 2: {:?}",
        brief(&extra)
    );
    let letters = collect(&mut dead, 1, SOON).await;
    assert_eq!(header(&letters[0], "sluice-dlq-attempts"), Some("2"));
    Ok(())
}
