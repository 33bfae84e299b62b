//! A million delayed messages: they wait in the schedule's log, the index
//! keeps 24 bytes each, so the broker's memory grows by far less than
//! their payloads, while waiting and again after a restart rebuilt the
//! index from the log.

use std::path::Path;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use sluice_client::Message;
use sluice_tests::{bounded_for, ChildBroker};

/// Delayed messages published.
const MESSAGES: u64 = 1_000_000;
/// Their payload: 1M of them hold 256 MB.
const PAYLOAD: usize = 256;
/// Messages per publish, and publishes in flight.
const BATCH: u64 = 2_000;
const WINDOW: usize = 4;
/// The bound on the growth of the broker's resident memory: the index
/// (24 MiB, up to 32 as its heap grows by doubling), the schedule log's
/// de-duplication ids (capped at 16 MiB by the config below), and room for
/// the allocator and buffers. A broker holding the payloads would need
/// 256 MB more.
const GROWTH_BOUND: u64 = 112 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_delayed_messages_keep_memory_bounded() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let binary = Path::new(env!("CARGO_BIN_EXE_sluice-under-test"));
    let config = "[storage]\nfsync = \"never\"\ndedup_max_bytes = 16777216\n";
    let mut broker = ChildBroker::start(binary, dir.path(), config).await?;
    let client = broker.client().await?;
    let payload = bytes::Bytes::from(vec![b'x'; PAYLOAD]);
    let publish = |first: u64| {
        let client = client.clone();
        let payload = payload.clone();
        async move {
            let batch = (first..first + BATCH)
                .map(|i| {
                    Message::new("later", payload.clone())
                        .id(format!("m{i}"))
                        .delay(Duration::from_secs(3600 + i % 600))
                })
                .collect();
            client.publish_batch(batch).await
        }
    };
    // One batch first, so the baseline has the topic, the schedule and
    // the connection's buffers.
    publish(0).await?;
    let baseline = broker.rss_bytes()?;
    let mut pending = FuturesUnordered::new();
    let mut next = BATCH;
    bounded_for(
        "publishing a million delayed messages",
        Duration::from_secs(600),
        async {
            while next < MESSAGES || !pending.is_empty() {
                while pending.len() < WINDOW && next < MESSAGES {
                    pending.push(publish(next));
                    next += BATCH;
                }
                if let Some(acked) = pending.next().await {
                    acked?;
                }
            }
            anyhow::Ok(())
        },
    )
    .await?;
    let info = client.topic_info("later").await?;
    assert_eq!((info.waiting, info.messages), (MESSAGES, 0));
    let grown = broker.rss_bytes()?.saturating_sub(baseline);
    println!(
        "1M delayed messages of {PAYLOAD} B: resident memory grew {} MiB (bound {} MiB)",
        grown >> 20,
        GROWTH_BOUND >> 20
    );
    assert!(grown <= GROWTH_BOUND, "grew {grown} bytes");

    // After a restart the index is read back from the log.
    client.close().await;
    broker.kill()?;
    broker.restart().await?;
    let client = broker.client().await?;
    let waiting =
        sluice_tests::wait_until("the index rebuilt", Duration::from_secs(300), || async {
            match client.topic_info("later").await {
                Ok(info) if info.waiting == MESSAGES => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
    waiting.await;
    let rss = broker.rss_bytes()?;
    println!("after a restart: {} MiB resident", rss >> 20);
    assert!(
        rss <= baseline + GROWTH_BOUND,
        "{rss} bytes after a restart"
    );
    Ok(())
}
