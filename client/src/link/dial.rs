//! Connecting to one of several addresses: the first that answers wins.
//!
//! Attempts start in list order, beginning at a given address; the next
//! starts when one fails, or after [`NEXT_ADDRESS_AFTER`] while earlier
//! ones are still waiting (a dead node answers nothing, and QUIC only
//! gives up on it at the timeout), so a live node later in the list is
//! reached within a second or so of a dead one ahead of it.

use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use crate::connection::Connection;
use crate::error::ClientError;
use crate::options::ClientOptions;

/// How long an attempt has to answer before the next address is tried
/// beside it: several round trips of a slow path, well under a timeout.
const NEXT_ADDRESS_AFTER: Duration = Duration::from_millis(500);

/// Connects to the first of `servers` that answers, trying them from
/// index `first` round the list, as connection `generation`. Each attempt
/// is bounded by `options.connect_timeout`, and by `deadline` if given.
/// When every address fails: the single address's error, else the first
/// refusal by a broker or configuration error, else all failures in one.
pub(super) async fn first_answering(
    options: &ClientOptions,
    servers: &[String],
    first: usize,
    generation: u64,
    deadline: Option<Instant>,
) -> Result<Connection, ClientError> {
    let order: Vec<&str> = (0..servers.len())
        .map(|i| servers[(first + i) % servers.len()].as_str())
        .collect();
    let mut attempts = FuturesUnordered::new();
    let mut failures: Vec<(&str, ClientError)> = Vec::new();
    let mut started = 0;
    let next_start = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(next_start);
    while failures.len() < order.len() {
        tokio::select! {
            () = &mut next_start, if started < order.len() => {
                let address = order[started];
                started += 1;
                let limit = match deadline {
                    Some(deadline) => options
                        .connect_timeout
                        .min(deadline.saturating_duration_since(Instant::now())),
                    None => options.connect_timeout,
                };
                attempts.push(async move {
                    let attempt = tokio::time::timeout(
                        limit,
                        Connection::open(options, address, generation),
                    );
                    (address, attempt.await.unwrap_or(Err(ClientError::Timeout(limit))))
                });
                next_start.as_mut().reset(Instant::now() + NEXT_ADDRESS_AFTER);
            }
            Some((address, result)) = attempts.next(), if !attempts.is_empty() => match result {
                Ok(conn) => return Ok(conn),
                Err(e) => {
                    tracing::debug!(server = address, error = %e, "connection attempt failed");
                    failures.push((address, e));
                    // No reason to wait for the next address now.
                    next_start.as_mut().reset(Instant::now());
                }
            },
        }
    }
    Err(combine(failures))
}

/// One error for the failed attempts (at least one).
fn combine(mut failures: Vec<(&str, ClientError)>) -> ClientError {
    if failures.len() == 1 {
        return failures.remove(0).1;
    }
    let telling = failures
        .iter()
        .position(|(_, e)| matches!(e, ClientError::Config(_)))
        .or_else(|| {
            failures
                .iter()
                .position(|(_, e)| matches!(e, ClientError::Server(_)))
        });
    if let Some(index) = telling {
        return failures.swap_remove(index).1;
    }
    let addresses: Vec<&str> = failures.iter().map(|(a, _)| *a).collect();
    let reasons: Vec<String> = failures
        .iter()
        .map(|(address, e)| format!("{address}: {e}"))
        .collect();
    ClientError::Connect {
        addr: addresses.join(","),
        source: format!("no address answered ({})", reasons.join("; ")).into(),
    }
}

#[cfg(test)]
mod tests {
    use sluice_proto::{ErrorBody, ErrorCode};

    use super::*;

    #[test]
    fn one_failure_is_returned_as_it_is() {
        let e = combine(vec![("a:1", ClientError::Timeout(Duration::from_secs(1)))]);
        assert!(matches!(e, ClientError::Timeout(_)), "{e}");
    }

    #[test]
    fn a_refusal_says_more_than_a_timeout() {
        let e = combine(vec![
            ("a:1", ClientError::Timeout(Duration::from_secs(1))),
            (
                "b:2",
                ClientError::Server(ErrorBody::new(ErrorCode::Unauthorized, "bad token")),
            ),
        ]);
        assert_eq!(e.code(), Some(ErrorCode::Unauthorized), "{e}");
    }

    #[test]
    fn otherwise_every_address_is_named() {
        let e = combine(vec![
            ("a:1", ClientError::Timeout(Duration::from_secs(1))),
            ("b:2", ClientError::Timeout(Duration::from_secs(2))),
        ]);
        let text = e.to_string();
        assert!(text.starts_with("cannot connect to a:1,b:2"), "{text}");
        assert!(text.contains("a:1: timed out after 1s"), "{text}");
        assert!(text.contains("b:2: timed out after 2s"), "{text}");
    }
}
