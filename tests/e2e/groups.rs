//! Consumer groups: durable fan-out between groups, competing consumers
//! within one, acks, redelivery with backoff, dead letters, key order,
//! hand-over when a member leaves, restarts (clean and SIGKILL), reset,
//! listing, and the `sluice sub --group` / `sluice groups` command line.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_client::{
    Client, ClientError, ConsumeOptions, Consumer, Delivered, Delivery, ErrorCode, GroupInfo,
    Message, StartPosition,
};
use sluice_tests::{collect, fetch_all, wait_until, ChildBroker, TestBroker, WAIT};

/// Bound of one wait for deliveries that should come at once.
const SOON: Duration = Duration::from_secs(5);

/// `(topic, offset, attempt)` of deliveries, for readable assertions.
fn brief(deliveries: &[Delivery]) -> Vec<(String, u64, u32)> {
    deliveries
        .iter()
        .map(|d| (d.topic.clone(), d.offset, d.attempt))
        .collect()
}

fn text(message: &Delivered) -> String {
    String::from_utf8_lossy(&message.payload).into_owned()
}

fn header<'a>(message: &'a Delivered, name: &str) -> Option<&'a str> {
    message
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Receives exactly `n` deliveries within `limit`; panics otherwise.
async fn recv_n(consumer: &mut Consumer, n: usize, limit: Duration) -> Vec<Delivery> {
    let group = consumer.group().to_owned();
    let deadline = tokio::time::Instant::now() + limit;
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Some(Ok(delivery))) => got.push(delivery),
            Ok(Some(Err(e))) => panic!(
                "consumer of {group} failed after {} of {n} deliveries: {e}",
                got.len()
            ),
            Ok(None) => panic!(
                "consumer of {group} ended after {} of {n} deliveries",
                got.len()
            ),
            Err(_) => panic!(
                "consumer of {group} received {} of {n} deliveries within {limit:?}: {:?}",
                got.len(),
                brief(&got)
            ),
        }
    }
    got
}

/// The next delivery, within `limit`.
async fn next(consumer: &mut Consumer, limit: Duration) -> Delivery {
    recv_n(consumer, 1, limit).await.remove(0)
}

/// Whatever arrives within `window` (usually expected to be nothing).
async fn drain(consumer: &mut Consumer, window: Duration) -> Vec<Delivery> {
    let group = consumer.group().to_owned();
    let deadline = tokio::time::Instant::now() + window;
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Some(Ok(delivery))) => got.push(delivery),
            Ok(Some(Err(e))) => panic!("consumer of {group} failed: {e}"),
            Ok(None) => panic!("consumer of {group} ended"),
            Err(_) => return got,
        }
    }
}

/// Waits until the group has `n` connected members.
async fn wait_members(client: &Client, group: &str, n: usize) {
    wait_until(
        &format!("group {group} to have {n} members"),
        SOON,
        || async {
            let info = client.group_info(group).await.map_err(|e| e.to_string())?;
            if info.members.len() == n {
                Ok(())
            } else {
                Err(format!("{} members", info.members.len()))
            }
        },
    )
    .await
}

/// `(lag, pending)` summed over the group's topics.
fn totals(info: &GroupInfo) -> (u64, u64) {
    info.topics.iter().fold((0, 0), |(lag, pending), t| {
        (lag + t.lag, pending + t.pending)
    })
}

fn offsets_of(deliveries: &[Delivery]) -> BTreeSet<u64> {
    deliveries.iter().map(|d| d.offset).collect()
}

async fn ack_all(deliveries: &[Delivery]) -> anyhow::Result<()> {
    for d in deliveries {
        d.ack().await?;
    }
    Ok(())
}

async fn publish_n(client: &Client, topic: &str, n: u64) -> anyhow::Result<()> {
    let messages = (0..n)
        .map(|i| Message::new(topic, format!("{topic}-{i}")))
        .collect();
    client.publish_batch(messages).await?;
    Ok(())
}

fn expect_code<T: std::fmt::Debug>(result: Result<T, ClientError>, code: ErrorCode, what: &str) {
    match result {
        Ok(value) => panic!("{what}: expected {code:?}, got Ok({value:?})"),
        Err(e) => assert_eq!(e.code(), Some(code), "{what}: {e}"),
    }
}

// 1. The order example -------------------------------------------------------

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

    // (worker, offset, attempt, payload) of every acked inventory delivery.
    let seen = Arc::new(Mutex::new(Vec::<(usize, u64, u32, String)>::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (client, mut consumer)) in workers.into_iter().enumerate() {
        let seen = seen.clone();
        tasks.spawn(async move {
            let _client = client;
            while let Some(delivery) = consumer.recv().await {
                let delivery = delivery.expect("inventory delivery");
                delivery.ack().await.expect("inventory ack");
                seen.lock().unwrap().push((
                    index,
                    delivery.offset,
                    delivery.attempt,
                    text(&delivery),
                ));
            }
        });
    }

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

    wait_until("inventory to ack every order", WAIT, || async {
        let n = seen.lock().unwrap().len();
        if n >= N {
            Ok(())
        } else {
            Err(n)
        }
    })
    .await;
    // A duplicate would show up here.
    tokio::time::sleep(Duration::from_millis(300)).await;
    tasks.abort_all();
    let seen = seen.lock().unwrap().clone();
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

// 2. A worker that goes away ---------------------------------------------------

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

// 3. Poison messages and dead letters -------------------------------------------

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

// 4. Key order ---------------------------------------------------------------------

#[derive(Default)]
struct KeyLedger {
    in_flight: HashMap<String, u64>,
    /// Completed sequence numbers per key, in completion order.
    done: BTreeMap<String, Vec<u64>>,
    violations: Vec<String>,
    attempts_over_1: Vec<(String, u64, u32)>,
}

/// A small xorshift for the random processing times.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test]
async fn a_key_ordered_group_keeps_one_message_per_key_in_flight() -> anyhow::Result<()> {
    const KEYS: u64 = 10;
    const PER_KEY: u64 = 20;
    let broker = TestBroker::start().await?;
    let publisher = broker.client().await?;
    publisher.create_topic("accounts", None, None).await?;
    let ledger = Arc::new(Mutex::new(KeyLedger::default()));
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..4u64 {
        let client = broker.client().await?;
        let mut consumer = client
            .consume(
                "accounts",
                "ledger",
                ConsumeOptions::default().key_ordered(true).max_in_flight(4),
            )
            .await?;
        let ledger = ledger.clone();
        tasks.spawn(async move {
            let _client = client;
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (worker + 1);
            while let Some(delivery) = consumer.recv().await {
                let delivery = delivery.expect("delivery");
                let key = String::from_utf8_lossy(delivery.key.as_deref().unwrap_or_default())
                    .into_owned();
                let seq: u64 = text(&delivery)
                    .rsplit('-')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("numbered payload");
                {
                    let mut l = ledger.lock().unwrap();
                    if let Some(other) = l.in_flight.insert(key.clone(), seq) {
                        l.violations
                            .push(format!("{key}: {seq} delivered while {other} in flight"));
                    }
                    if delivery.attempt != 1 {
                        l.attempts_over_1.push((key.clone(), seq, delivery.attempt));
                    }
                }
                let pause = xorshift(&mut rng) % 6;
                tokio::time::sleep(Duration::from_millis(pause)).await;
                {
                    let mut l = ledger.lock().unwrap();
                    l.in_flight.remove(&key);
                    l.done.entry(key).or_default().push(seq);
                }
                delivery.ack().await.expect("ack");
            }
        });
    }
    wait_members(&publisher, "ledger", 4).await;
    let mut batch = Vec::new();
    for seq in 0..PER_KEY {
        for key in 0..KEYS {
            batch.push(Message::new("accounts", format!("k{key}-{seq}")).key(format!("k{key}")));
        }
    }
    publisher.publish_batch(batch).await?;

    wait_until("every message to be processed", WAIT, || async {
        let l = ledger.lock().unwrap();
        let n: usize = l.done.values().map(Vec::len).sum();
        if n >= (KEYS * PER_KEY) as usize {
            Ok(())
        } else {
            Err(n)
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    tasks.abort_all();
    {
        let l = ledger.lock().unwrap();
        assert!(
            l.violations.is_empty(),
            "two messages of one key in flight: {:?}",
            l.violations
        );
        assert!(l.attempts_over_1.is_empty(), "{:?}", l.attempts_over_1);
        assert_eq!(l.done.len(), KEYS as usize);
        for (key, seqs) in &l.done {
            assert_eq!(
                seqs,
                &(0..PER_KEY).collect::<Vec<_>>(),
                "{key}: processed in publish order, each once"
            );
        }
    }
    let info = publisher.group_info("ledger").await?;
    assert_eq!(totals(&info), (0, 0), "{info:?}");
    assert!(info.options.key_ordered);
    Ok(())
}

/// After a restart, the pending messages of a key-ordered group include
/// messages that were never delivered because their key was busy; they must
/// still go out one per key.
#[tokio::test]
async fn key_order_holds_across_a_restart() -> anyhow::Result<()> {
    let mut broker = TestBroker::start().await?;
    let client = broker.client().await?;
    client.create_topic("ko.t", None, None).await?;
    let options = ConsumeOptions::default()
        .key_ordered(true)
        .ack_wait(Duration::from_secs(30))
        .max_in_flight(10);
    let mut consumer = client.consume("ko.t", "ko", options.clone()).await?;
    wait_members(&client, "ko", 1).await;
    let batch = vec![
        Message::new("ko.t", "K-0").key("K"),
        Message::new("ko.t", "K-1").key("K"),
        Message::new("ko.t", "K-2").key("K"),
        Message::new("ko.t", "L-0").key("L"),
    ];
    client.publish_batch(batch).await?;
    let first = recv_n(&mut consumer, 2, SOON).await;
    assert_eq!(offsets_of(&first), BTreeSet::from([0, 3]));
    assert!(
        drain(&mut consumer, Duration::from_millis(300))
            .await
            .is_empty(),
        "K-1 waits for K-0"
    );
    drop(first);
    drop(consumer);
    client.close().await;
    drop(client);

    broker.restart().await?;
    let client = broker.client().await?;
    let mut consumer = client.consume("ko.t", "ko", options).await?;
    // Nothing is acked: only one message of K may be out.
    let got = drain(&mut consumer, Duration::from_millis(1500)).await;
    let k: Vec<(u64, u32)> = got
        .iter()
        .filter(|d| d.key.as_deref() == Some(&b"K"[..]))
        .map(|d| (d.offset, d.attempt))
        .collect();
    assert_eq!(
        k,
        vec![(0, 2)],
        "after a restart only K-0 (again) may be in flight: {:?}",
        brief(&got)
    );
    // Then the rest follows in order as each is acked.
    let mut order = vec![0];
    let mut pending: Vec<Delivery> = got;
    while order.len() < 3 {
        let k_pos = pending
            .iter()
            .position(|d| d.key.as_deref() == Some(&b"K"[..]))
            .expect("a K message in hand");
        let d = pending.remove(k_pos);
        d.ack().await?;
        let n = next(&mut consumer, SOON).await;
        if n.key.as_deref() == Some(&b"K"[..]) {
            order.push(n.offset);
        }
        pending.push(n);
    }
    assert_eq!(order, vec![0, 1, 2]);
    Ok(())
}

// 5. Restarts --------------------------------------------------------------------

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

// 6. Ack wait ------------------------------------------------------------------------

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

// 7. Bad input ---------------------------------------------------------------------

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

// 8. Reset and listing ---------------------------------------------------------------

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

// 9. The command line -------------------------------------------------------------------

/// Runs the CLI with `args` against `broker`; returns (exit success, stdout, stderr).
async fn cli(broker: &TestBroker, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
        .args(args)
        .arg("--server")
        .arg(broker.addr().to_string())
        .arg("--ca")
        .arg(broker.cert_path())
        .env_remove("SLUICE_TOKEN")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            child.kill()?;
            let output = child.wait_with_output()?;
            anyhow::bail!(
                "sluice {args:?} did not exit within 20 s; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let output = child.wait_with_output()?;
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

#[tokio::test]
async fn the_cli_consumes_as_a_group_member_and_shows_groups() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    publish_n(&client, "cli.t", 5).await?;

    let (ok, out, err) = cli(
        &broker,
        &[
            "sub", "cli.t", "--group", "g", "--count", "3", "--from", "earliest",
        ],
    )
    .await?;
    assert!(ok, "sluice sub failed; stdout:\n{out}\nstderr:\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for line in &lines {
        assert!(line.starts_with("cli.t@"), "{line}");
    }
    let printed: BTreeSet<u64> = lines
        .iter()
        .map(|l| {
            l["cli.t@".len()..]
                .split(':')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(printed.len(), 3, "{out}");

    // The CLI acked what it printed and left; two messages are left to do
    // (undelivered, or handed back: see the next test).
    let info = client.group_info("g").await?;
    assert_eq!(info.members.len(), 0, "{info:?}");
    let (lag, pending) = totals(&info);
    assert_eq!(
        (lag + pending, info.topics[0].ack_floor),
        (2, 3),
        "{info:?}"
    );

    let (ok, out, err) = cli(&broker, &["groups", "info", "g"]).await?;
    assert!(ok, "groups info failed; stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("group:         g"), "{out}");
    assert!(out.contains("pattern:       cli.t"), "{out}");
    assert!(
        out.contains(&format!("pending:       {pending}\n")),
        "{out}"
    );
    assert!(out.contains(&format!("lag:           {lag}\n")), "{out}");
    assert!(out.contains("cli.t"), "{out}");

    let (ok, out, err) = cli(&broker, &["groups", "info", "g", "--json"]).await?;
    assert!(
        ok,
        "groups info --json failed; stdout:\n{out}\nstderr:\n{err}"
    );
    let json: serde_json::Value = serde_json::from_str(out.trim())?;
    assert_eq!(json["name"], "g", "{json}");
    assert_eq!(json["pattern"], "cli.t", "{json}");
    assert_eq!(json["pending"], pending, "{json}");
    assert_eq!(json["lag"], lag, "{json}");
    assert_eq!(json["members"].as_array().map(Vec::len), Some(0), "{json}");

    let (ok, out, err) = cli(&broker, &["groups", "list"]).await?;
    assert!(ok, "groups list failed; stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().take(2).eq(["g", "cli.t"])),
        "{out}"
    );

    // A second run gets the two that are left.
    let (ok, out, err) = cli(&broker, &["sub", "cli.t", "--group", "g", "--count", "2"]).await?;
    assert!(
        ok,
        "second sluice sub failed; stdout:\n{out}\nstderr:\n{err}"
    );
    let second: BTreeSet<u64> = out
        .lines()
        .map(|l| {
            l["cli.t@".len()..]
                .split([':', ' '])
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(second.len(), 2, "{out}");
    assert!(second.is_disjoint(&printed), "{out}");
    let info = client.group_info("g").await?;
    assert_eq!(totals(&info), (0, 0), "{info:?}");
    Ok(())
}

/// `sub --group --count N` takes no more than N credits "so nothing is held
/// and handed back (as a redelivery) at exit" (host/src/cli/subscribe.rs).
#[tokio::test]
async fn the_cli_with_a_count_leaves_nothing_half_done() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    publish_n(&client, "count.t", 5).await?;
    let (ok, out, err) = cli(&broker, &["sub", "count.t", "--group", "c", "--count", "3"]).await?;
    assert!(ok, "sluice sub failed; stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    let info = client.group_info("c").await?;
    assert_eq!(
        totals(&info),
        (2, 0),
        "after printing and acking 3 of 5, the other 2 should be untouched, not held and handed back: {info:?}"
    );
    let (ok, out, err) = cli(&broker, &["sub", "count.t", "--group", "c", "--count", "2"]).await?;
    assert!(ok, "sluice sub failed; stdout:\n{out}\nstderr:\n{err}");
    assert!(
        !out.contains("attempt"),
        "first deliveries expected:\n{out}"
    );
    Ok(())
}

#[tokio::test]
async fn pipelined_acks_are_settled_in_batches_each_with_its_own_result() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client().await?;
    for i in 0..200 {
        client.publish("batched", format!("m{i}")).await?;
    }
    let mut consumer = client
        .consume(
            "batched",
            "acks",
            ConsumeOptions::default().max_in_flight(200),
        )
        .await?;
    let deliveries = recv_n(&mut consumer, 200, WAIT).await;
    // All at once: the client coalesces them into batch requests. A second
    // ack of the first message fails alone, with its own code.
    let mut settles: Vec<_> = deliveries.iter().map(|d| d.ack()).collect();
    settles.push(deliveries[0].ack());
    let results = futures_util::future::join_all(settles).await;
    let failed: Vec<_> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().err().map(|e| (i, e.code())))
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].1, Some(ErrorCode::UnknownDelivery));
    let info = client.group_info("acks").await?;
    assert_eq!(info.topics[0].ack_floor, 200, "{info:?}");
    assert_eq!(info.topics[0].pending, 0);

    // The raw request: per-item results, a bad item does not fail the rest.
    publish_and_settle_raw(&broker).await
}

async fn publish_and_settle_raw(broker: &TestBroker) -> anyhow::Result<()> {
    use sluice_proto::{
        RequestBody, ResponseBody, ServerFrame, SettleAction, SettleBatch, SettleItem,
    };
    let client = broker.client().await?;
    client.publish("raw.batched", "x").await?;
    let mut consumer = client
        .consume("raw.batched", "raw", ConsumeOptions::default())
        .await?;
    let d = recv_n(&mut consumer, 1, WAIT).await;
    assert_eq!(d[0].offset, 0);
    let raw = sluice_tests::RawClient::connect(broker.addr(), broker.cert_path()).await?;
    let mut control = raw.open_control().await?;
    control.handshake().await?;
    let item = |topic: &str, offset| SettleItem {
        topic: topic.into(),
        offset,
        action: SettleAction::Ack,
    };
    control
        .send_request(
            9,
            RequestBody::SettleBatch(SettleBatch {
                group: "raw".into(),
                items: vec![
                    item("raw.batched", 0),
                    item("bad topic!", 0),
                    item("raw.batched", 7),
                ],
            }),
        )
        .await?;
    let Some(ServerFrame::Response(response)) =
        sluice_tests::bounded("the batch answer", control.next()).await?
    else {
        anyhow::bail!("no response");
    };
    assert_eq!(response.id, 9);
    let Ok(ResponseBody::SettledBatch { errors }) = response.result else {
        anyhow::bail!("unexpected {:?}", response.result);
    };
    assert_eq!(errors.len(), 3);
    assert!(errors[0].is_none(), "{errors:?}");
    assert_eq!(
        errors[1].as_ref().and_then(|e| e.error_code()),
        Some(ErrorCode::InvalidTopic)
    );
    assert_eq!(
        errors[2].as_ref().and_then(|e| e.error_code()),
        Some(ErrorCode::UnknownDelivery)
    );
    // A batch for a group that does not exist fails as a whole.
    control
        .send_request(
            10,
            RequestBody::SettleBatch(SettleBatch {
                group: "nope".into(),
                items: vec![item("raw.batched", 0)],
            }),
        )
        .await?;
    let Some(ServerFrame::Response(response)) =
        sluice_tests::bounded("the batch answer", control.next()).await?
    else {
        anyhow::bail!("no response");
    };
    assert_eq!(
        response.result.unwrap_err().error_code(),
        Some(ErrorCode::GroupNotFound)
    );
    Ok(())
}
