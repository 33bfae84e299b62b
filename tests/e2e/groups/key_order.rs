//! Key order: a key-ordered group keeps one message per key in flight,
//! across competing members and across a restart.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_client::{ConsumeOptions, Delivery, Message};
use sluice_tests::{TestBroker, WAIT};
use tokio::sync::mpsc;

use super::{
    brief, drain, late_reports, next, offsets_of, recv_n, reports, text, totals, wait_members,
    DUPLICATE_WINDOW, SOON,
};

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
    // `(key, seq)` of each message once its ack is answered.
    let (processed, mut reported) = mpsc::channel::<(String, u64)>((KEYS * PER_KEY) as usize);
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
        let processed = processed.clone();
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
                // Simulated work, not a wait for anything: a random 0-5 ms
                // keeps several keys in flight at once and their
                // completions out of publish order.
                let pause = xorshift(&mut rng) % 6;
                tokio::time::sleep(Duration::from_millis(pause)).await;
                {
                    let mut l = ledger.lock().unwrap();
                    l.in_flight.remove(&key);
                    l.done.entry(key.clone()).or_default().push(seq);
                }
                delivery.ack().await.expect("ack");
                if processed.send((key, seq)).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(processed);
    wait_members(&publisher, "ledger", 4).await;
    let mut batch = Vec::new();
    for seq in 0..PER_KEY {
        for key in 0..KEYS {
            batch.push(Message::new("accounts", format!("k{key}-{seq}")).key(format!("k{key}")));
        }
    }
    publisher.publish_batch(batch).await?;

    reports(
        &mut reported,
        (KEYS * PER_KEY) as usize,
        "processed messages",
        WAIT,
    )
    .await;
    // A duplicate would show up within the window; the ledger records it.
    late_reports(&mut reported, DUPLICATE_WINDOW).await;
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
