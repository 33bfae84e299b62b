//! Watching the connection and replacing it when it is lost.
//!
//! A connection is lost when the node stops (the broker says it is
//! shutting down), dies or becomes unreachable (nothing heard for
//! `idle_timeout`), or answers packets with a reset (a node restarted on
//! the same address). The link then dials the addresses again, the one
//! after the lost one first (round robin), pausing between rounds from
//! [`FIRST_BACKOFF`] doubling up to [`MAX_BACKOFF`], for
//! `reconnect_timeout` in all. On a new connection it opens the client's
//! subscriptions and consumers again and sends what the lost one left
//! unanswered (publishes, reads: what may be sent twice), in its first
//! order, before new requests go to it. A close by
//! the application, or by the broker for a reason of its own
//! (unauthorized, a protocol error), ends the link instead.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::{dial, End, Link, State};
use crate::connection::{lock, Connection, Unanswered};
use crate::error::{ClientError, Unreachable};

/// The pause after the first round of attempts that failed.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause between two rounds: a node that is back is found
/// within this (plus its handshake).
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Watches the link's connection (`quic`, the current one) until the link
/// is over or dropped, reconnecting whenever it is lost.
pub(super) async fn run(link: Weak<Link>, mut quic: quinn::Connection) {
    loop {
        quic.closed().await;
        let Some(strong) = link.upgrade() else {
            return;
        };
        let lost = strong.current();
        let cause = lost.closed_error();
        if !cause.is_connection_loss() {
            let end = match cause {
                ClientError::Server(body) => {
                    tracing::warn!(server = %lost.address(), error = %body, "the broker closed the connection; not reconnecting");
                    End::Refused(body)
                }
                _ => End::Closed,
            };
            strong.finish(end);
            return;
        }
        tracing::warn!(server = %lost.address(), error = %cause, "connection lost; reconnecting");
        if !strong.mark_reconnecting() {
            return;
        }
        drop(strong);
        match reconnect(&link, &lost, cause).await {
            Some(next) => quic = next,
            None => return,
        }
    }
}

/// Dials until a new connection is up with every stream resumed and the
/// lost connection's unanswered requests sent again, the link is over or
/// dropped, or `reconnect_timeout` ran out (then the link ends as
/// [`End::Unreachable`] and so do those requests). The new connection's
/// QUIC handle, if any.
async fn reconnect(
    weak: &Weak<Link>,
    lost: &Connection,
    cause: ClientError,
) -> Option<quinn::Connection> {
    let (options, servers) = {
        let link = weak.upgrade()?;
        (link.options.clone(), link.servers.clone())
    };
    let mut unanswered = lost.unanswered().await;
    let started = Instant::now();
    let deadline = started + options.reconnect_timeout;
    let mut first = servers
        .iter()
        .position(|s| s == lost.address())
        .map_or(0, |i| i + 1)
        % servers.len();
    let mut backoff = FIRST_BACKOFF;
    let mut last_attempt = None;
    while Instant::now() < deadline {
        let link = weak.upgrade()?;
        if link.is_over() {
            unanswered.extend(link.take_held());
            unanswered.fail(|| ClientError::Closed);
            return None;
        }
        let generation = link.next_generation.fetch_add(1, Ordering::Relaxed);
        match dial::first_answering(&options, &servers, first, generation, Some(deadline)).await {
            Ok(conn) => match link.resume_streams(&conn).await {
                Ok(()) => {
                    unanswered.extend(link.take_held());
                    let resent = unanswered.len();
                    let left = conn.adopt(std::mem::take(&mut unanswered)).await;
                    if left.is_empty() {
                        let conn = Arc::new(conn);
                        let quic = conn.quic().clone();
                        let address = conn.address().to_owned();
                        if !link.switch_to(conn) {
                            return None;
                        }
                        tracing::info!(server = %address, lost = %lost.address(), after = ?started.elapsed(), resent, "reconnected");
                        return Some(quic);
                    }
                    link.hold_again();
                    unanswered = left;
                    unanswered.extend(conn.unanswered().await);
                    tracing::warn!(server = %conn.address(), "lost the new connection while sending again what the old one left unanswered");
                    last_attempt = Some(format!("{}: connection lost", conn.address()));
                }
                Err(e) => {
                    tracing::warn!(server = %conn.address(), error = %e, "lost the new connection while resuming subscriptions");
                    last_attempt = Some(format!("{}: {e}", conn.address()));
                }
            },
            Err(e) => {
                tracing::warn!(servers = %options.server, error = %e, "reconnect attempt failed");
                last_attempt = Some(e.to_string());
            }
        }
        drop(link);
        first = (first + 1) % servers.len();
        tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now()))).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    let unreachable = Unreachable {
        lost: lost.address().to_owned(),
        code: cause.code(),
        cause: cause.to_string(),
        servers: servers.join(","),
        waited: Duration::from_millis(started.elapsed().as_millis() as u64),
        last_attempt,
    };
    tracing::warn!(error = %unreachable, "giving up reconnecting");
    let link = weak.upgrade()?;
    // Over first: nothing is held after this.
    link.finish(End::Unreachable(unreachable.clone()));
    unanswered.extend(link.take_held());
    unanswered.fail(|| ClientError::Unreachable(unreachable.clone()));
    None
}

impl Link {
    /// From up to reconnecting, new requests held; false if the link is
    /// over.
    fn mark_reconnecting(&self) -> bool {
        let mut held = lock(&self.held);
        let marked = self.state.send_if_modified(|state| match state {
            State::Up(conn) => {
                *state = State::Reconnecting(conn.clone());
                true
            }
            _ => false,
        });
        if marked {
            *held = Some(Unanswered::default());
        }
        marked
    }

    /// The requests held while reconnecting, and no more held from now on
    /// (they wait for the next connection instead, and go after these).
    fn take_held(&self) -> Unanswered {
        lock(&self.held).take().unwrap_or_default()
    }

    /// Holds requests again: the new connection is lost too.
    fn hold_again(&self) {
        lock(&self.held).get_or_insert_with(Unanswered::default);
    }

    /// Makes `conn` the connection requests go to; false (and `conn` is
    /// dropped, which closes it) if the link is over.
    fn switch_to(&self, conn: Arc<Connection>) -> bool {
        let mut next = Some(conn);
        self.state.send_if_modified(|state| match state {
            State::Over { .. } => false,
            _ => {
                *state = State::Up(next.take().expect("taken once"));
                true
            }
        })
    }

    /// Whether the link will not connect again.
    fn is_over(&self) -> bool {
        matches!(&*self.state.borrow(), State::Over { .. })
    }
}
