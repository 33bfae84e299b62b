//! [`Steady`]: a well-behaved client that keeps publishing and reading
//! while a test misbehaves beside it, and checks at the end that it lost
//! nothing.

use std::sync::Arc;
use std::time::Duration;

use sluice_client::{Client, StartPosition, Subscription};

use crate::messages::{collect, fetch_all, offsets};
use crate::wait::bounded;

/// Pause between two steady publishes. Pacing, not waiting for anything:
/// the steady client should keep a modest, regular load beside the test
/// rather than flood the broker it is meant to witness.
const PACE: Duration = Duration::from_millis(2);

/// A well-behaved client publishing to `steady` (awaiting each ack, a
/// short pause between) and subscribed to it from the start, while a test
/// misbehaves beside it.
pub struct Steady {
    /// The client (for more checks that it still works).
    pub client: Client,
    sub: Subscription,
    stop: Arc<std::sync::atomic::AtomicBool>,
    publisher: tokio::task::JoinHandle<anyhow::Result<u64>>,
}

impl Steady {
    /// Starts publishing `m0`, `m1`, ... to `steady` with `client`.
    pub async fn start(client: Client) -> anyhow::Result<Steady> {
        use std::sync::atomic::Ordering;
        let sub = client.subscribe("steady", StartPosition::Earliest).await?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let publisher = tokio::spawn({
            let client = client.clone();
            let stop = stop.clone();
            async move {
                let mut next = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let stored = bounded(
                        "a steady publish",
                        client.publish("steady", format!("m{next}")),
                    )
                    .await?;
                    anyhow::ensure!(stored.offset == next, "m{next} stored at {}", stored.offset);
                    next += 1;
                    tokio::time::sleep(PACE).await;
                }
                Ok(next)
            }
        });
        Ok(Steady {
            client,
            sub,
            stop,
            publisher,
        })
    }

    /// Stops publishing and checks that the subscription got, and the topic
    /// holds, every acknowledged message exactly once, in order; returns
    /// how many.
    pub async fn finish(mut self) -> anyhow::Result<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let count = bounded("the steady publisher", self.publisher).await??;
        let got = collect(&mut self.sub, count as usize, Duration::from_secs(10)).await;
        anyhow::ensure!(
            offsets(&got) == (0..count).collect::<Vec<_>>(),
            "steady messages missing or out of order"
        );
        anyhow::ensure!(
            got.iter()
                .enumerate()
                .all(|(i, m)| m.payload == format!("m{i}").as_bytes()),
            "steady payloads changed"
        );
        let stored = fetch_all(&self.client, "steady", StartPosition::Earliest).await?;
        anyhow::ensure!(stored == got, "stored differs from delivered");
        Ok(count)
    }
}
