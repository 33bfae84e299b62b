//! Consumer groups in cluster mode: members on different nodes share one
//! group's messages; acks, nacks and rejects map to JetStream; a settle
//! through a node that does not hold the delivery is refused clearly.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_client::{ConsumeOptions, Consumer, Delivery, ErrorCode, Message, StartPosition};
use sluice_proto::{RequestBody, ServerFrame, Settle, SettleAction};
use sluice_tests::{bounded, fetch_all, RawClient};

use super::Cluster;

const SOON: Duration = Duration::from_secs(15);

/// Receives until `done` says so, within `limit`.
async fn recv_until(
    consumer: &mut Consumer,
    limit: Duration,
    mut done: impl FnMut(&[Delivery]) -> bool,
) -> Vec<Delivery> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut got = Vec::new();
    while !done(&got) {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Some(Ok(d))) => got.push(d),
            Ok(Some(Err(e))) => panic!("consumer failed after {} deliveries: {e}", got.len()),
            Ok(None) => panic!("consumer ended after {} deliveries", got.len()),
            Err(_) => panic!("only {} deliveries within {limit:?}", got.len()),
        }
    }
    got
}

/// Sends an ack of `delivery` for `group` through node `node` on a bare
/// connection; the error code of the answer, if it is an error.
async fn settle_through(
    cluster: &Cluster,
    node: usize,
    group: &str,
    delivery: &Delivery,
) -> anyhow::Result<Option<ErrorCode>> {
    let broker = &cluster.nodes[node];
    let raw = RawClient::connect(broker.addr(), broker.cert_path()).await?;
    let mut control = raw.open_control().await?;
    control.handshake().await?;
    let settle = Settle {
        group: group.to_owned(),
        topic: delivery.topic.clone(),
        offset: delivery.offset,
        action: SettleAction::Ack,
        consumer: None,
        attempt: Some(delivery.attempt),
    };
    control.send_request(1, RequestBody::Settle(settle)).await?;
    match bounded("the answer to a settle", control.next()).await? {
        Some(ServerFrame::Response(response)) => {
            Ok(response.result.err().and_then(|e| e.error_code()))
        }
        other => anyhow::bail!("unexpected answer {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_two_nodes_share_a_group_and_every_message_is_acked_once() -> anyhow::Result<()>
{
    let cluster = Cluster::start(2).await?;
    let (a, b) = (cluster.client(0).await?, cluster.client(1).await?);
    a.create_topic("jobs", None, None).await?;
    let options = || ConsumeOptions::default().max_in_flight(8);
    let mut on_a = a.consume("jobs", "workers", options()).await?;
    let mut on_b = b.consume("jobs", "workers", options()).await?;
    let total = 200u64;
    let batch: Vec<Message> = (0..total)
        .map(|i| Message::new("jobs", format!("job-{i}")))
        .collect();
    a.publish_batch(batch).await?;

    // Both members work until every offset is acked once.
    let mut acked: BTreeMap<u64, usize> = BTreeMap::new();
    let mut by_member = [0usize; 2];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while acked.len() < total as usize {
        let (which, delivery) = tokio::select! {
            d = on_a.recv() => (0, d),
            d = on_b.recv() => (1, d),
            () = tokio::time::sleep_until(deadline) => panic!("{} of {total} acked in time", acked.len()),
        };
        let delivery = delivery.expect("consumer open")?;
        delivery.ack().await?;
        *acked.entry(delivery.offset).or_default() += 1;
        by_member[which] += 1;
    }
    assert!(
        acked.values().all(|n| *n == 1),
        "an offset acked twice: {acked:?}"
    );
    assert!(
        by_member.iter().all(|n| *n > 0),
        "both members got work: {by_member:?}"
    );
    let info = b.group_info("workers").await?;
    assert_eq!(info.topics.len(), 1);
    assert_eq!(info.topics[0].pending, 0, "{info:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_redelivers_reject_dead_letters_and_a_foreign_settle_is_stale() -> anyhow::Result<()> {
    let cluster = Cluster::start(2).await?;
    let (a, b) = (cluster.client(0).await?, cluster.client(1).await?);
    a.create_topic("mail", None, None).await?;
    let options = ConsumeOptions::default()
        .max_in_flight(4)
        .backoff([Duration::from_millis(100)])
        .max_deliver(2);
    let mut consumer = a.consume("mail", "senders", options).await?;
    a.publish("mail", "nack me").await?;
    a.publish("mail", "reject me").await?;

    let first = recv_until(&mut consumer, SOON, |got| got.len() == 2).await;
    let (nacked, rejected) = (&first[0], &first[1]);
    assert_eq!((nacked.offset, nacked.attempt), (0, 1));
    rejected.reject("malformed").await?;
    nacked.nack(None).await?;
    // Redelivered after the backoff, as attempt 2.
    let again = recv_until(&mut consumer, SOON, |got| !got.is_empty()).await;
    assert_eq!((again[0].offset, again[0].attempt), (0, 2));
    // Its second failure uses up max_deliver: dead-lettered.
    again[0].nack(None).await?;

    let letters = tokio::time::timeout(SOON, async {
        loop {
            if let Ok(letters) = fetch_all(&b, "dlq.mail", StartPosition::Earliest).await {
                if letters.len() >= 2 {
                    return letters;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("both dead letters stored");
    let mut bodies: Vec<String> = letters
        .iter()
        .map(|d| String::from_utf8_lossy(&d.payload).into_owned())
        .collect();
    bodies.sort();
    assert_eq!(bodies, vec!["nack me", "reject me"]);
    assert_eq!(letters.len(), 2, "each dead letter stored once");

    // A delivery settled through a node that does not hold it: refused as
    // stale, never applied to another delivery.
    a.publish("mail", "held by A").await?;
    let held = recv_until(&mut consumer, SOON, |got| !got.is_empty()).await;
    let foreign = settle_through(&cluster, 1, "senders", &held[0]).await?;
    assert_eq!(foreign, Some(ErrorCode::StaleSettle));
    held[0].ack().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_ordered_group_keeps_each_keys_order_across_members_on_two_nodes(
) -> anyhow::Result<()> {
    let cluster = Cluster::start(2).await?;
    let (a, b) = (cluster.client(0).await?, cluster.client(1).await?);
    a.create_topic("accounts", None, None).await?;
    let options = || ConsumeOptions::default().key_ordered(true).max_in_flight(4);
    let mut on_a = a.consume("accounts", "ledger", options()).await?;
    let mut on_b = b.consume("accounts", "ledger", options()).await?;
    let total = 60u64;
    let batch: Vec<Message> = (0..total)
        .map(|i| Message::new("accounts", format!("{i}")).key(format!("acct-{}", i % 4)))
        .collect();
    a.publish_batch(batch).await?;

    // Handled in the order the members see them, acked after each: per key,
    // offsets must come in ascending order, whichever member handles them.
    let mut handled: Vec<(String, u64)> = Vec::new();
    let mut by_member = [0usize; 2];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while handled.len() < total as usize {
        let (which, delivery) = tokio::select! {
            d = on_a.recv() => (0, d),
            d = on_b.recv() => (1, d),
            () = tokio::time::sleep_until(deadline) => panic!("{} of {total} handled in time", handled.len()),
        };
        let delivery = delivery.expect("consumer open")?;
        let key = String::from_utf8_lossy(delivery.key.as_deref().unwrap_or_default()).into_owned();
        handled.push((key, delivery.offset));
        by_member[which] += 1;
        delivery.ack().await?;
    }
    for key in 0..4 {
        let offsets: Vec<u64> = handled
            .iter()
            .filter(|(k, _)| *k == format!("acct-{key}"))
            .map(|(_, o)| *o)
            .collect();
        let mut sorted = offsets.clone();
        sorted.sort_unstable();
        assert_eq!(offsets, sorted, "acct-{key} out of order");
        assert_eq!(offsets.len(), 15);
    }
    assert!(
        by_member.iter().all(|n| *n > 0),
        "both members worked: {by_member:?}"
    );
    Ok(())
}
