//! Delayed messages in cluster mode: the node holding the schedule lease
//! fires them; when it is SIGKILLed, the other node takes the lease over
//! and fires what is left, each message once, in due order, never early.

use std::time::{Duration, SystemTime};

use sluice_client::{Delivered, Message, StartPosition, DELIVER_AT_HEADER};
use sluice_tests::{fetch_all, wait_until, Network};

use super::cluster::FaultCluster;

/// What the node holding the lease logs.
const FIRES: &str = "this node fires the delayed messages";

fn payloads(messages: &[Delivered]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

fn due_ms(m: &Delivered) -> i64 {
    let (_, text) = m
        .headers
        .iter()
        .find(|(n, _)| n == DELIVER_AT_HEADER)
        .expect("a delayed message names its due time");
    let at = humantime::parse_rfc3339(text).expect("RFC 3339");
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_messages_fire_once_after_the_firing_node_is_killed() -> anyhow::Result<()> {
    let _one = super::run::ONE_AT_A_TIME.lock().await;
    let mut cluster = FaultCluster::start(Network::Loopback).await?;
    let firer = wait_until(
        "a node takes the schedule lease",
        Duration::from_secs(30),
        || async {
            let holders: Vec<usize> = (0..cluster.nodes.len())
                .filter(|i| cluster.nodes[*i].log().contains(FIRES))
                .collect();
            match holders.as_slice() {
                [one] => Ok(*one),
                other => Err(format!("holders: {other:?}")),
            }
        },
    )
    .await;
    let other = 1 - firer;
    let publisher = cluster.client(firer, "publisher").await?;
    let mut batch = Vec::new();
    for i in 0..15u64 {
        let delay = if i < 5 { 500 + i * 20 } else { 10_000 + i * 20 };
        batch.push(
            Message::new("later", format!("m{i:02}"))
                .id(format!("id-{i}"))
                .delay(Duration::from_millis(delay)),
        );
    }
    publisher.publish_batch(batch).await?;
    let reader = cluster.client(other, "reader").await?;
    let stored = |n: usize| {
        let reader = reader.clone();
        async move {
            let all = fetch_all(&reader, "later", StartPosition::Earliest)
                .await
                .map_err(|e| e.to_string())?;
            if all.len() >= n {
                Ok(all)
            } else {
                Err(format!("{} stored", all.len()))
            }
        }
    };
    // The first five fire on the lease holder; every node counts the rest.
    wait_until("the first five fired", Duration::from_secs(30), || {
        stored(5)
    })
    .await;
    wait_until(
        "ten waiting, seen from the other node",
        Duration::from_secs(30),
        || async {
            match reader.topic_info("later").await {
                Ok(info) if info.waiting == 10 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert!(
        !cluster.nodes[other].log().contains(FIRES),
        "one firer at a time"
    );

    cluster.nodes[firer].kill()?;
    let all = wait_until(
        "the other node fires the rest",
        Duration::from_secs(60),
        || stored(15),
    )
    .await;
    let expected: Vec<String> = (0..15).map(|i| format!("m{i:02}")).collect();
    assert_eq!(
        payloads(&all),
        expected,
        "each once, in due order:\n{}",
        cluster.node_logs()
    );
    let offsets: Vec<u64> = all.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, (0..15).collect::<Vec<u64>>());
    for m in &all {
        assert!(m.timestamp_ms >= due_ms(m), "stored before due: {m:?}");
    }
    assert!(cluster.nodes[other].log().contains(FIRES));
    assert_eq!(reader.topic_info("later").await?.waiting, 0);
    // The firer trims the schedule's stream of what fired (a purge: the
    // schedule's namespace allows it, users' topics do not).
    wait_until(
        "the schedule's stream trimmed",
        Duration::from_secs(30),
        || async {
            let state = cluster.nats.stream_state(0, "SLS_delayed").await;
            match state
                .as_ref()
                .map(|s| s.as_ref().and_then(|s| s["first_seq"].as_u64()))
            {
                Ok(Some(first)) if first > 15 => Ok(()),
                _ => Err(format!("{state:?}")),
            }
        },
    )
    .await;
    Ok(())
}
