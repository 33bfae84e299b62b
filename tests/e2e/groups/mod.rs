//! Consumer groups: durable fan-out between groups, competing consumers
//! within one, acks, redelivery with backoff, dead letters, key order,
//! hand-over when a member leaves, stale settlements refused, restarts
//! (clean and SIGKILL), reset, listing, and the `sluice sub --group` /
//! `sluice groups` command line.
//! One module per theme; the helpers they share are here.

mod bad_requests;
mod cli;
mod dead_letters;
mod key_order;
mod positions;
mod redelivery;
mod restarts;
mod settle_batches;
mod sharing;
mod stale_settles;

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::time::Duration;

use sluice_client::{
    Client, ClientError, Consumer, Delivered, Delivery, ErrorCode, GroupInfo, Message,
};
use sluice_tests::wait_until;
use tokio::sync::mpsc;

/// Bound of one wait for deliveries that should come at once.
const SOON: Duration = Duration::from_secs(5);

/// How long a duplicate is given to show up once everything expected came.
const DUPLICATE_WINDOW: Duration = Duration::from_millis(300);

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

/// Receives exactly `n` reports from worker tasks within `limit`; panics
/// naming `what` otherwise.
async fn reports<T: Debug>(
    reports: &mut mpsc::Receiver<T>,
    n: usize,
    what: &str,
    limit: Duration,
) -> Vec<T> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match tokio::time::timeout_at(deadline, reports.recv()).await {
            Ok(Some(report)) => got.push(report),
            Ok(None) => panic!(
                "the workers stopped after {} of {n} reports of {what}: {got:?}",
                got.len()
            ),
            Err(_) => panic!(
                "{} of {n} reports of {what} within {limit:?}: {got:?}",
                got.len()
            ),
        }
    }
    got
}

/// Whatever the worker tasks report within `window` (usually expected to be
/// nothing: the window is how long a duplicate is given to show up).
async fn late_reports<T>(reports: &mut mpsc::Receiver<T>, window: Duration) -> Vec<T> {
    let deadline = tokio::time::Instant::now() + window;
    let mut got = Vec::new();
    while let Ok(Some(report)) = tokio::time::timeout_at(deadline, reports.recv()).await {
        got.push(report);
    }
    got
}
