//! A group's durable pull consumers: one per (group, topic), on the topic's
//! stream, created by whichever node first needs it (creation with the same
//! configuration is idempotent in JetStream, so nodes racing agree).
//!
//! JetStream's own redelivery limit stops redelivering silently, so
//! `max_deliver` is unlimited here and sluice's policy enforces the limit.
//! The node that holds a delivery decides when it failed (its ack wait) and
//! how long to wait (the policy's backoff, sent as the NAK's delay);
//! JetStream's `ack_wait`/`backoff` only come into play when that node is
//! gone, and mirror the policy: attempt n is redelivered after the group's
//! ack wait plus its n-th backoff step, plus a grace so that a live node
//! always acts first.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use sluice_proto::{GroupOptions, StartPosition};

use crate::groups::policy;
use crate::nats::{names, Nats};

/// What JetStream waits beyond sluice's own timers before it redelivers a
/// message whose node said nothing.
const GRACE: Duration = Duration::from_secs(2);

/// Backoff steps mirrored to JetStream (its list must be finite).
const MIRRORED_STEPS: usize = 16;

/// Deliveries of one group (per topic) unacknowledged at once, as
/// JetStream bounds them.
pub(super) const MAX_ACK_PENDING: i64 = 65_536;

/// Where the consumer of a topic starts.
pub(super) fn deliver_policy(start: StartPosition) -> DeliverPolicy {
    match start {
        StartPosition::Earliest => DeliverPolicy::All,
        StartPosition::Latest => DeliverPolicy::New,
        StartPosition::Offset(offset) => DeliverPolicy::ByStartSequence {
            start_sequence: offset + 1,
        },
        StartPosition::Timestamp(ms) => {
            let nanos = i128::from(ms.max(0)) * 1_000_000;
            match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
                Ok(start_time) => DeliverPolicy::ByStartTime { start_time },
                Err(_) => DeliverPolicy::All,
            }
        }
    }
}

/// When JetStream redelivers attempt n (the n-th entry) if no node acts:
/// the group's ack wait plus the policy's backoff for n, plus [`GRACE`].
fn mirrored_backoff(options: &GroupOptions) -> Vec<Duration> {
    let ack_wait = policy::ack_wait(options);
    (1..=MIRRORED_STEPS as u32)
        .map(|attempt| ack_wait + policy::backoff(options, attempt) + GRACE)
        .collect()
}

/// The consumer of `group` on `topic` (whose stream's subject is
/// `subject`), starting at `deliver`.
pub(super) fn config(
    nats: &Nats,
    group: &str,
    topic: &str,
    subject: &str,
    options: &GroupOptions,
    deliver: DeliverPolicy,
) -> pull::Config {
    pull::Config {
        durable_name: Some(names::consumer(group, topic)),
        description: Some(format!("sluice group {group} on topic {topic}")),
        deliver_policy: deliver,
        ack_policy: AckPolicy::Explicit,
        ack_wait: policy::ack_wait(options) + GRACE,
        max_deliver: -1,
        backoff: mirrored_backoff(options),
        filter_subject: subject.to_owned(),
        // Key order: one message of the topic in flight in the group.
        max_ack_pending: if options.key_ordered {
            1
        } else {
            MAX_ACK_PENDING
        },
        num_replicas: nats.replicas,
        metadata: HashMap::from([
            ("sluice.group".to_owned(), group.to_owned()),
            ("sluice.topic".to_owned(), topic.to_owned()),
        ]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jetstream_redelivers_after_sluice_would_have() {
        let options = GroupOptions {
            ack_wait_ms: 1_000,
            backoff_ms: vec![100, 500],
            ..GroupOptions::default()
        };
        let backoff = mirrored_backoff(&options);
        assert_eq!(backoff[0], Duration::from_millis(3_100));
        assert_eq!(backoff[1], Duration::from_millis(3_500));
        assert_eq!(
            backoff[15],
            Duration::from_millis(3_500),
            "the last step repeats"
        );
        assert!(matches!(
            deliver_policy(StartPosition::Offset(9)),
            DeliverPolicy::ByStartSequence { start_sequence: 10 }
        ));
    }
}
