//! Reading messages back: exactly `n` from a subscription, up to a chosen
//! one, or everything a topic stores; and short forms of them for
//! readable assertions.

use std::time::Duration;

use anyhow::Context;
use sluice_client::{Client, Delivered, StartPosition, Subscription};

/// How long [`fetch_all`] may take in all, batch after batch.
const FETCH_ALL_LIMIT: Duration = Duration::from_secs(20);

/// Receives exactly `n` messages from `sub`, failing if the subscription ends,
/// errors, or the messages do not arrive within `limit`.
pub async fn collect(sub: &mut Subscription, n: usize, limit: Duration) -> Vec<Delivered> {
    let mut got = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + limit;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, sub.recv()).await {
            Ok(Some(Ok(message))) => got.push(message),
            Ok(Some(Err(e))) => panic!(
                "subscription {} failed after {} of {n} messages: {e}",
                sub.pattern(),
                got.len()
            ),
            Ok(None) => panic!(
                "subscription {} ended after {} of {n} messages",
                sub.pattern(),
                got.len()
            ),
            Err(_) => panic!(
                "subscription {} received {} of {n} messages within {limit:?}: {:?}",
                sub.pattern(),
                got.len(),
                summary(&got)
            ),
        }
    }
    got
}

/// Receives messages until one satisfies `last`, which is included; bounded by `limit`.
pub async fn collect_until(
    sub: &mut Subscription,
    limit: Duration,
    mut last: impl FnMut(&Delivered) -> bool,
) -> Vec<Delivered> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, sub.recv()).await {
            Ok(Some(Ok(message))) => {
                let done = last(&message);
                got.push(message);
                if done {
                    return got;
                }
            }
            Ok(Some(Err(e))) => panic!("subscription {} failed: {e}", sub.pattern()),
            Ok(None) => panic!("subscription {} ended early", sub.pattern()),
            Err(_) => panic!(
                "subscription {}: the awaited message did not arrive within {limit:?}; got {:?}",
                sub.pattern(),
                summary(&got)
            ),
        }
    }
}

/// `(topic, offset, payload)` of each message, for readable assertions.
pub fn summary(messages: &[Delivered]) -> Vec<(String, u64, String)> {
    messages
        .iter()
        .map(|m| {
            (
                m.topic.clone(),
                m.offset,
                String::from_utf8_lossy(&m.payload).into_owned(),
            )
        })
        .collect()
}

/// Offsets of `messages`, in order.
pub fn offsets(messages: &[Delivered]) -> Vec<u64> {
    messages.iter().map(|m| m.offset).collect()
}

/// Fetches everything stored in `topic` from `from`, batch after batch, until
/// the fetch reaches the end offset it reports. Bounded.
pub async fn fetch_all(
    client: &Client,
    topic: &str,
    from: StartPosition,
) -> anyhow::Result<Vec<Delivered>> {
    fetch_all_within(client, topic, from, FETCH_ALL_LIMIT).await
}

/// [`fetch_all`] bounded by `limit` in all (a long log needs longer); an
/// error when it takes longer.
pub async fn fetch_all_within(
    client: &Client,
    topic: &str,
    from: StartPosition,
    limit: Duration,
) -> anyhow::Result<Vec<Delivered>> {
    let mut out = Vec::new();
    let mut position = from;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let batch = tokio::time::timeout_at(deadline, client.fetch(topic, position, 1000))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "fetching {topic} did not finish within {limit:?} ({} messages read)",
                    out.len()
                )
            })?
            .with_context(|| format!("fetch {topic} from {position:?}"))?;
        let done = batch.messages.is_empty() || batch.next_offset >= batch.end_offset;
        out.extend(batch.messages);
        if done {
            return Ok(out);
        }
        position = StartPosition::Offset(batch.next_offset);
    }
}

/// Milliseconds since the Unix epoch, as the broker stamps messages.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}
