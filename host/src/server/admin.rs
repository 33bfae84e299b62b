//! The admin listener: plain HTTP/1.1 on `[admin] listen` (loopback by
//! default) with two read-only endpoints:
//!
//! - `GET /metrics`: Prometheus / OpenMetrics text ([`crate::metrics`]).
//! - `GET /healthz`: `200 ok` while the broker serves, `503` once it is
//!   shutting down.
//!
//! One request per connection, request heads up to 8 KiB read within 5 s;
//! anything else gets a short error status. It carries no credentials and
//! changes nothing, so it is meant for a loopback or a private interface.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;

const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves until `shutdown`.
pub async fn serve(listener: TcpListener, broker: Broker, shutdown: CancellationToken) {
    let tasks = TaskTracker::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let broker = broker.clone();
                    let shutdown = shutdown.clone();
                    tasks.spawn(async move {
                        if let Err(e) = handle(stream, &broker, &shutdown).await {
                            tracing::debug!(error = %e, "admin request failed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin listener cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = shutdown.cancelled() => break,
        }
    }
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), tasks.wait()).await;
}

/// Reads a request head; `None` if it is not one within the limits.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(None);
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                return Ok(Some(String::from_utf8_lossy(&head).into_owned()));
            }
            if head.len() > MAX_HEAD {
                return Ok(None);
            }
        }
    };
    match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(result) => result,
        Err(_) => Ok(None),
    }
}

async fn handle(
    mut stream: TcpStream,
    broker: &Broker,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let Some(head) = read_head(&mut stream).await? else {
        return respond(&mut stream, 400, "text/plain", "bad request\n").await;
    };
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => {
            let state = crate::metrics::State {
                topics: broker.list_topics().await,
                groups: broker.list_groups().await,
                plugins: broker.plugins().status(),
            };
            let body = broker.metrics().render(&state);
            respond(
                &mut stream,
                200,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                &body,
            )
            .await
        }
        ("GET", "/healthz") if shutdown.is_cancelled() => {
            respond(&mut stream, 503, "text/plain", "shutting down\n").await
        }
        ("GET", "/healthz") => respond(&mut stream, 200, "text/plain", "ok\n").await,
        ("GET", _) => {
            respond(
                &mut stream,
                404,
                "text/plain",
                "not found: try /metrics or /healthz\n",
            )
            .await
        }
        _ => respond(&mut stream, 405, "text/plain", "only GET is served\n").await,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
