//! A work-queue worker pool: `WORKERS` members of one consumer group, each
//! acking what it receives; prints the acked rate. Publish first, e.g.
//! `sluice pub jobs --count 100000 --size 1024`.
//!
//! ```sh
//! cargo run --release -p sluice-client --example worker -- [SERVER] [CA_FILE] [TOPIC] [GROUP] [WORKERS] [COUNT]
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use sluice_client::{Client, ClientOptions, ConsumeOptions, Trust};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_owned());
    let server = arg(0, "127.0.0.1:4433");
    let ca = arg(1, "sluice-data/tls/cert.pem");
    let topic = arg(2, "jobs");
    let group = arg(3, "workers");
    let workers: usize = arg(4, "4").parse()?;
    let count: u64 = arg(5, "100000").parse()?;

    let acked = Arc::new(AtomicU64::new(0));
    // Nanoseconds from start to the latest ack: idle time at the end is not counted.
    let last_ack = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut pool = FuturesUnordered::new();
    for _ in 0..workers {
        let options = ClientOptions::new(server.clone()).trust(Trust::CaFile(ca.clone().into()));
        let client = Client::connect(options).await?;
        let mut consumer = client
            .consume(
                topic.clone(),
                group.clone(),
                ConsumeOptions::default().max_in_flight(256),
            )
            .await?;
        let acked = acked.clone();
        let last_ack = last_ack.clone();
        let record = move |acked: &AtomicU64| {
            acked.fetch_add(1, Ordering::Relaxed);
            last_ack.fetch_max(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        };
        pool.push(tokio::spawn(async move {
            // Acks are pipelined: up to 256 in flight per worker.
            let mut acks = FuturesUnordered::new();
            loop {
                if acked.load(Ordering::Relaxed) >= count {
                    break;
                }
                tokio::select! {
                    delivery = consumer.next() => match delivery {
                        Some(Ok(d)) => acks.push(async move { d.ack().await }),
                        _ => break,
                    },
                    Some(result) = acks.next(), if !acks.is_empty() => {
                        result?;
                        record(&acked);
                    }
                    () = tokio::time::sleep(Duration::from_secs(2)) => break,
                }
            }
            while let Some(result) = acks.next().await {
                result?;
                record(&acked);
            }
            client.close().await;
            anyhow::Ok(())
        }));
    }
    while let Some(joined) = pool.next().await {
        joined??;
    }
    let n = acked.load(Ordering::Relaxed);
    let secs = Duration::from_nanos(last_ack.load(Ordering::Relaxed)).as_secs_f64();
    println!(
        "{workers} workers acked {n} messages in {:.2} s: {:.0} msg/s",
        secs.max(1e-9),
        n as f64 / secs.max(1e-9)
    );
    Ok(())
}
