//! The `connections` scenario: open `--connections` idle connections,
//! ping each, hold them; with `--admin`, the broker's resident memory
//! before and while they are held, read from its `/metrics`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::load::bar;
use super::report::Outcome;
use super::target::Target;
use crate::cli::args::BenchArgs;

/// Time the broker gets to settle (handshake buffers freed, keep-alives
/// flowing) before its memory is read with the connections held.
const SETTLE: Duration = Duration::from_secs(2);

/// The broker's resident memory, from its `/metrics` (asking the server
/// to close the connection after its answer, so the read ends).
async fn broker_rss(admin: SocketAddr) -> anyhow::Result<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(admin)
        .await
        .with_context(|| format!("cannot reach the admin listener at {admin}"))?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: sluice\r\nconnection: close\r\n\r\n")
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    text.lines()
        .find_map(|l| l.strip_prefix("sluice_process_resident_memory_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .context("the broker's /metrics has no sluice_process_resident_memory_bytes")
}

/// `connections`: connection setup (+ ping) latencies, and memory.
pub async fn connections(args: &BenchArgs, target: &Target) -> anyhow::Result<Outcome> {
    let before = match args.admin {
        Some(admin) => Some(broker_rss(admin).await?),
        None => None,
    };
    let progress = bar(args.connections as u64, "connections");
    let deadline = Instant::now() + args.max_time;
    let start = Instant::now();
    let mut clients = Vec::with_capacity(args.connections);
    let mut setup = Vec::with_capacity(args.connections);
    while clients.len() < args.connections && Instant::now() < deadline {
        let t = Instant::now();
        let client = target.client().await?;
        client.ping().await.context("ping on a new connection")?;
        setup.push(t.elapsed().as_micros() as u64);
        clients.push(client);
        progress.inc(1);
    }
    let took = start.elapsed();
    progress.finish_and_clear();
    tokio::time::sleep(SETTLE).await;
    let mut held_rss = None;
    if let (Some(admin), Some(before)) = (args.admin, before) {
        let held = broker_rss(admin).await?;
        held_rss = Some(held);
        eprintln!(
            "connections: broker RSS {:.1} MiB idle, {:.1} MiB with {} connections ({:.1} KiB each)",
            before as f64 / 1048576.0,
            held as f64 / 1048576.0,
            clients.len(),
            held.saturating_sub(before) as f64 / 1024.0 / clients.len().max(1) as f64
        );
    }
    let n = clients.len() as u64;
    for client in clients {
        client.close().await;
    }
    let label = "connections (setup + ping)";
    let mut row = Outcome::new(label, 0, n, took).latencies(setup);
    row.rss_before_bytes = before;
    row.rss_held_bytes = held_rss;
    Ok(row)
}
