//! What a consumer group decides, as pure functions of its options and
//! state, so that every backend decides alike: the ack wait, the backoff
//! after a failed delivery, when a message is given up on and dead-lettered,
//! which message may go next in a key-ordered group, and when the group
//! needs to wake up.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use sluice_proto::GroupOptions;
use tokio::time::Instant;

/// The dead-letter reason of a message whose time-to-live ran out before
/// the group delivered it (when its topic dead-letters expired messages).
pub const EXPIRED: &str = "expired";

/// Longest `nack` delay, ack wait or backoff step accepted (one day).
pub const MAX_NACK_DELAY_MS: u64 = 24 * 60 * 60 * 1000;

/// What becomes of a message whose delivery failed (nacked, its ack wait
/// expired, its member left).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterFailure {
    /// Delivered again after this long.
    Redeliver {
        /// The delay.
        after: Duration,
    },
    /// Given up on: stored in the dead-letter topic with this reason.
    DeadLetter {
        /// Why, for the dead letter's header.
        reason: String,
    },
}

/// How long a member has to settle a delivery.
pub fn ack_wait(options: &GroupOptions) -> Duration {
    Duration::from_millis(options.ack_wait_ms.max(1))
}

/// The delay before the next delivery after `attempt` deliveries failed:
/// the `attempt`-th backoff step (the last step repeats), or the ack wait
/// when there are no steps.
pub fn backoff(options: &GroupOptions, attempt: u32) -> Duration {
    let steps = &options.backoff_ms;
    match steps.get((attempt.max(1) - 1) as usize).or(steps.last()) {
        Some(ms) => Duration::from_millis(*ms),
        None => ack_wait(options),
    }
}

/// What to do after delivery number `attempt` failed for `reason`;
/// `delay` is the one a nack asked for.
pub fn after_failure(
    options: &GroupOptions,
    attempt: u32,
    reason: &str,
    delay: Option<Duration>,
) -> AfterFailure {
    if attempt >= options.max_deliver.max(1) {
        return AfterFailure::DeadLetter {
            reason: format!("{reason}; gave up after {attempt} deliveries (max_deliver)"),
        };
    }
    AfterFailure::Redeliver {
        after: delay.unwrap_or_else(|| backoff(options, attempt)),
    }
}

/// The dead-letter reason of a message a member rejected.
pub fn rejected(reason: &str) -> String {
    format!("rejected: {reason}")
}

/// A message pending when the broker stopped, whose last delivery was its
/// last allowed one: given up on, with this reason. `None`: deliver again.
pub fn exhausted_at_restart(options: &GroupOptions, attempt: u32) -> Option<String> {
    (attempt >= options.max_deliver.max(1))
        .then(|| format!("broker restarted; gave up after {attempt} deliveries (max_deliver)"))
}

/// In a key-ordered group, the first of the next `scan` messages whose key
/// is not held by a pending message (a message without a key may always
/// go). Without key order, the first.
pub fn next_to_deliver<'a>(
    key_ordered: bool,
    keys: impl Iterator<Item = Option<&'a Bytes>>,
    busy: &HashSet<Bytes>,
    scan: usize,
) -> Option<usize> {
    let mut keys = keys.take(scan);
    if !key_ordered {
        return keys.next().map(|_| 0);
    }
    keys.position(|key| key.is_none_or(|k| !busy.contains(k)))
}

/// When the group must wake up by itself: the first ack deadline, the
/// first due redelivery if a member has credit to take it (otherwise a
/// join or a settlement wakes the group anyway), or a retry of dead letters
/// that could not be stored. `None`: sleep until something happens.
pub fn next_wake(
    first_deadline: Option<Instant>,
    first_due: Option<Instant>,
    a_member_has_credit: bool,
    dead_letter_retry: Option<Instant>,
) -> Option<Instant> {
    let due = first_due.filter(|_| a_member_has_credit);
    [first_deadline, due, dead_letter_retry]
        .into_iter()
        .flatten()
        .min()
}

/// Why a settlement does not answer the delivery in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staleness {
    /// Nobody holds the message: its ack wait ran out or it was nacked,
    /// and it waits to be delivered again (or to be dead-lettered).
    NotHeld,
    /// Another member holds it, as attempt `attempt` (it was delivered
    /// again, or the settlement came from a connection it was not
    /// delivered to).
    OtherMember { attempt: u32 },
    /// The settling member holds attempt `in_flight`, not `answered`.
    OtherAttempt { answered: u32, in_flight: u32 },
}

impl Staleness {
    /// Whether a settlement by one of `members` for `attempt` (any, if
    /// `None`) is stale, given the message's `holder` and the attempt
    /// `in_flight`.
    pub fn of(
        holder: Option<u64>,
        in_flight: u32,
        members: &[u64],
        attempt: Option<u32>,
    ) -> Option<Staleness> {
        let Some(holder) = holder else {
            return Some(Staleness::NotHeld);
        };
        if !members.contains(&holder) {
            return Some(Staleness::OtherMember { attempt: in_flight });
        }
        match attempt {
            Some(answered) if answered != in_flight => Some(Staleness::OtherAttempt {
                answered,
                in_flight,
            }),
            _ => None,
        }
    }
}

impl std::fmt::Display for Staleness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Staleness::NotHeld => write!(
                f,
                "its delivery ended (ack wait ran out, or its member left) and it waits to be delivered again or dead-lettered"
            ),
            Staleness::OtherMember { attempt } => write!(
                f,
                "another member holds it (attempt {attempt}): settle it through the consumer it was delivered to"
            ),
            Staleness::OtherAttempt {
                answered,
                in_flight,
            } => write!(
                f,
                "this settles attempt {answered}, but attempt {in_flight} is in flight"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(max_deliver: u32, backoff_ms: Vec<u64>) -> GroupOptions {
        GroupOptions {
            max_deliver,
            backoff_ms,
            ack_wait_ms: 30_000,
            ..GroupOptions::default()
        }
    }

    #[test]
    fn backoff_steps_follow_the_attempt_and_the_last_one_repeats() {
        let o = options(10, vec![100, 1_000, 5_000]);
        let ms = |attempt| backoff(&o, attempt).as_millis();
        assert_eq!(
            [ms(0), ms(1), ms(2), ms(3), ms(7)],
            [100, 100, 1_000, 5_000, 5_000]
        );
        let no_steps = options(10, Vec::new());
        assert_eq!(
            backoff(&no_steps, 3),
            Duration::from_secs(30),
            "the ack wait"
        );
    }

    #[test]
    fn a_failure_at_max_deliver_is_a_dead_letter_and_before_it_a_redelivery() {
        let o = options(3, vec![250]);
        assert_eq!(
            after_failure(&o, 2, "nacked", None),
            AfterFailure::Redeliver {
                after: Duration::from_millis(250)
            }
        );
        assert_eq!(
            after_failure(&o, 2, "nacked", Some(Duration::ZERO)),
            AfterFailure::Redeliver {
                after: Duration::ZERO
            },
            "a nack's own delay wins"
        );
        match after_failure(&o, 3, "ack wait expired", None) {
            AfterFailure::DeadLetter { reason } => {
                assert_eq!(
                    reason,
                    "ack wait expired; gave up after 3 deliveries (max_deliver)"
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(rejected("bad input"), "rejected: bad input");
        assert!(exhausted_at_restart(&o, 2).is_none());
        assert!(exhausted_at_restart(&o, 3).is_some_and(|r| r.contains("broker restarted")));
        let zero = options(0, Vec::new());
        assert!(
            matches!(
                after_failure(&zero, 1, "x", None),
                AfterFailure::DeadLetter { .. }
            ),
            "max_deliver 0 counts as 1"
        );
    }

    #[test]
    fn key_order_skips_held_keys_within_the_scan() {
        let (a, b) = (Bytes::from("a"), Bytes::from("b"));
        let busy: HashSet<Bytes> = [a.clone()].into();
        let keys = [Some(&a), Some(&a), None, Some(&b)];
        assert_eq!(next_to_deliver(true, keys.into_iter(), &busy, 10), Some(2));
        assert_eq!(
            next_to_deliver(true, keys.into_iter(), &busy, 2),
            None,
            "beyond the scan"
        );
        assert_eq!(next_to_deliver(false, keys.into_iter(), &busy, 10), Some(0));
        assert_eq!(next_to_deliver(false, std::iter::empty(), &busy, 10), None);
        let only_held = [Some(&a)];
        assert_eq!(
            next_to_deliver(true, only_held.into_iter(), &busy, 10),
            None
        );
    }

    #[test]
    fn a_due_redelivery_without_a_member_with_credit_leaves_the_group_asleep() {
        let now = Instant::now();
        let past = now - Duration::from_secs(1);
        // The old spin: a redelivery due in the past and nobody to take it
        // must not make the group wake at once, again and again.
        assert_eq!(next_wake(None, Some(past), false, None), None);
        assert_eq!(next_wake(None, Some(past), true, None), Some(past));
        let later = now + Duration::from_secs(5);
        assert_eq!(next_wake(Some(later), Some(past), false, None), Some(later));
        assert_eq!(
            next_wake(Some(later), None, true, Some(now)),
            Some(now),
            "the earliest of all"
        );
    }

    #[test]
    fn only_the_holder_settles_the_attempt_in_flight() {
        // (holder, attempt in flight, settling members, attempt answered)
        assert_eq!(Staleness::of(Some(1), 1, &[1], Some(1)), None);
        assert_eq!(Staleness::of(Some(1), 3, &[1], None), None, "any attempt");
        assert_eq!(Staleness::of(Some(2), 1, &[1, 2], None), None, "any member");
        assert_eq!(
            Staleness::of(Some(2), 2, &[1], Some(1)),
            Some(Staleness::OtherMember { attempt: 2 }),
            "redelivered to another member"
        );
        assert_eq!(
            Staleness::of(Some(2), 2, &[1], None),
            Some(Staleness::OtherMember { attempt: 2 })
        );
        assert_eq!(
            Staleness::of(Some(1), 2, &[1], Some(1)),
            Some(Staleness::OtherAttempt {
                answered: 1,
                in_flight: 2
            }),
            "redelivered to the same member"
        );
        assert_eq!(
            Staleness::of(Some(1), 2, &[1], Some(3)),
            Some(Staleness::OtherAttempt {
                answered: 3,
                in_flight: 2
            })
        );
        assert_eq!(
            Staleness::of(None, 1, &[1], Some(1)),
            Some(Staleness::NotHeld),
            "ack wait ran out"
        );
        assert_eq!(
            Staleness::of(Some(1), 1, &[], None),
            Some(Staleness::OtherMember { attempt: 1 }),
            "no member on the connection"
        );
    }
}
