//! Sharing: durable fan-out between groups, competing consumers within one,
//! and the hand-over of a member's unsettled messages when it leaves.

use std::time::Duration;

use sluice_client::{ConsumeOptions, Message};
use sluice_tests::{TestBroker, WAIT};
use tokio::sync::mpsc;

use super::{
    ack_all, brief, drain, late_reports, offsets_of, publish_n, recv_n, reports, text, totals,
    wait_members, DUPLICATE_WINDOW, SOON,
};

#[tokio::test]
async fn orders_fan_out_to_groups_and_are_shared_within_one() -> anyhow::Result<()> {
    const N: usize = 60;
    let broker = TestBroker::start().await?;
    let publisher = broker.client().await?;
    publisher.create_topic("order.created", None, None).await?;

    // Three competing `inventory` workers, each on its own connection, and
    // one `shipping` worker; all joined before the first order.
    let mut workers = Vec::new();
    for _ in 0..3 {
        let client = broker.client().await?;
        let consumer = client
            .consume(
                "order.created",
                "inventory",
                ConsumeOptions::default().max_in_flight(8),
            )
            .await?;
        workers.push((client, consumer));
    }
    let shipping_client = broker.client().await?;
    let mut shipping = shipping_client
        .consume("order.created", "shipping", ConsumeOptions::default())
        .await?;
    wait_members(&publisher, "inventory", 3).await;
    wait_members(&publisher, "shipping", 1).await;

    for i in 0..N {
        publisher
            .publish_message(
                Message::new("order.created", format!("order-{i:03}"))
                    .key(format!("customer-{}", i % 7)),
            )
            .await?;
    }

    // (worker, offset, attempt, payload) of every acked inventory delivery,
    // reported once its ack is answered.
    let (acked, mut acks) = mpsc::channel::<(usize, u64, u32, String)>(N);
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (client, mut consumer)) in workers.into_iter().enumerate() {
        let acked = acked.clone();
        tasks.spawn(async move {
            let _client = client;
            while let Some(delivery) = consumer.recv().await {
                let delivery = delivery.expect("inventory delivery");
                delivery.ack().await.expect("inventory ack");
                let report = (index, delivery.offset, delivery.attempt, text(&delivery));
                if acked.send(report).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(acked);

    // Shipping gets every order too (durable fan-out).
    let shipped = recv_n(&mut shipping, N, WAIT).await;
    ack_all(&shipped).await?;
    let mut shipped_orders: Vec<String> = shipped.iter().map(|d| text(d)).collect();
    shipped_orders.sort();
    let all_orders: Vec<String> = (0..N).map(|i| format!("order-{i:03}")).collect();
    assert_eq!(shipped_orders, all_orders);
    assert!(
        shipped.iter().all(|d| d.attempt == 1),
        "{:?}",
        brief(&shipped)
    );

    let mut seen = reports(&mut acks, N, "inventory acks", WAIT).await;
    // A duplicate would show up within the window.
    seen.extend(late_reports(&mut acks, DUPLICATE_WINDOW).await);
    tasks.abort_all();
    assert_eq!(seen.len(), N, "every order acked exactly once: {seen:?}");
    let mut orders: Vec<String> = seen.iter().map(|s| s.3.clone()).collect();
    orders.sort();
    assert_eq!(orders, all_orders, "the union is every order, once");
    assert!(seen.iter().all(|s| s.2 == 1), "no redelivery: {seen:?}");
    let mut per_worker = [0usize; 3];
    for s in &seen {
        per_worker[s.0] += 1;
    }
    assert!(
        per_worker.iter().all(|n| *n > 0),
        "each worker gets a share: {per_worker:?}"
    );

    for group in ["inventory", "shipping"] {
        let info = publisher.group_info(group).await?;
        assert_eq!(info.name, group);
        assert_eq!(info.pattern, "order.created");
        assert_eq!(info.topics.len(), 1, "{info:?}");
        let t = &info.topics[0];
        assert_eq!(
            (
                t.topic.as_str(),
                t.ack_floor,
                t.cursor,
                t.end_offset,
                t.lag,
                t.pending
            ),
            ("order.created", N as u64, N as u64, N as u64, 0, 0),
            "{group}: {info:?}"
        );
        assert_eq!((info.redeliveries, info.dead_lettered), (0, 0), "{info:?}");
    }
    let info = publisher.group_info("shipping").await?;
    assert_eq!(info.members.len(), 1, "{info:?}");
    assert_eq!(info.members[0].delivered, N as u64);
    Ok(())
}

#[tokio::test]
async fn a_closed_workers_messages_go_to_another_at_once() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let admin = broker.client().await?;
    admin.create_topic("jobs", None, None).await?;
    // A long ack wait: only the hand-over can explain a quick redelivery.
    let options = || ConsumeOptions::default().ack_wait(Duration::from_secs(30));

    let client_a = broker.client().await?;
    let mut a = client_a
        .consume("jobs", "workers", options().max_in_flight(10))
        .await?;
    wait_members(&admin, "workers", 1).await;
    publish_n(&admin, "jobs", 30).await?;
    let held = recv_n(&mut a, 10, SOON).await;
    assert!(held.iter().all(|d| d.attempt == 1), "{:?}", brief(&held));
    assert!(
        drain(&mut a, Duration::from_millis(300)).await.is_empty(),
        "A holds no more than its max_in_flight"
    );

    let client_b = broker.client().await?;
    let mut b = client_b
        .consume("jobs", "workers", options().max_in_flight(100))
        .await?;
    let rest = recv_n(&mut b, 20, SOON).await;
    assert!(offsets_of(&rest).is_disjoint(&offsets_of(&held)));
    ack_all(&rest).await?;

    // A's process goes away without settling anything.
    client_a.close().await;
    drop(held);
    drop(a);
    drop(client_a);
    let handed_over = recv_n(&mut b, 10, SOON).await;
    assert_eq!(
        offsets_of(&handed_over),
        (0..30).filter(|o| !offsets_of(&rest).contains(o)).collect(),
        "B gets exactly A's unacked messages"
    );
    assert!(
        handed_over.iter().all(|d| d.attempt == 2),
        "{:?}",
        brief(&handed_over)
    );
    ack_all(&handed_over).await?;
    assert!(drain(&mut b, Duration::from_millis(300)).await.is_empty());

    let info = admin.group_info("workers").await?;
    assert_eq!(totals(&info), (0, 0), "{info:?}");
    assert_eq!(info.members.len(), 1, "only B is left: {info:?}");
    assert_eq!(info.topics[0].ack_floor, 30, "{info:?}");
    Ok(())
}

#[tokio::test]
async fn dropping_a_consumer_hands_its_messages_over() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    client.create_topic("drop.t", None, None).await?;
    let options = ConsumeOptions::default().ack_wait(Duration::from_secs(30));
    let mut a = client
        .consume("drop.t", "droppers", options.clone().max_in_flight(5))
        .await?;
    wait_members(&client, "droppers", 1).await;
    publish_n(&client, "drop.t", 5).await?;
    let held = recv_n(&mut a, 5, SOON).await;
    // B shares the connection; it gets nothing while A holds everything.
    let mut b = client
        .consume("drop.t", "droppers", options.max_in_flight(5))
        .await?;
    assert!(drain(&mut b, Duration::from_millis(300)).await.is_empty());
    drop(a);
    let handed_over = recv_n(&mut b, 5, SOON).await;
    assert_eq!(offsets_of(&handed_over), offsets_of(&held));
    assert!(handed_over.iter().all(|d| d.attempt == 2));
    ack_all(&handed_over).await?;
    let info = client.group_info("droppers").await?;
    assert_eq!((info.members.len(), totals(&info)), (1, (0, 0)), "{info:?}");
    Ok(())
}
