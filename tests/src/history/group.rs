//! [`GroupLedger`]: a consumer group's side of a history (every delivery
//! the members received, every settle and what the broker answered to it)
//! and the checks of it: no delivery after a confirmed ack, the log's bytes
//! in every delivery, and in the end, every message acked.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use sluice_client::Delivered;

use super::violation::{At, Attempt, Violation};

/// What the broker answered to a settle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleAnswer {
    /// Settled: the broker said it is done (durably).
    Confirmed,
    /// Refused (a stale settle, for one): nothing changed.
    Refused,
    /// No answer: the broker died first. It may or may not have applied it.
    InDoubt,
}

/// How a member settled a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleKind {
    /// Done; never deliver it again.
    Ack,
    /// Failed; deliver it again.
    Nack,
}

/// One message of the group, as its members saw it.
#[derive(Debug)]
struct GroupMessage {
    /// Of the first delivery's payload (all deliveries must agree).
    fingerprint: u64,
    /// Every delivery, in the order they were recorded.
    deliveries: Vec<Attempt>,
    /// The delivery whose ack the broker confirmed.
    acked: Option<Attempt>,
    /// An ack was sent and the broker died before answering.
    ack_in_doubt: bool,
}

/// True if delivery `d` came after the delivery `acked` was settled: a
/// later life, or a later attempt in the same life.
fn newer(d: Attempt, acked: Attempt) -> bool {
    d.life > acked.life || (d.life == acked.life && d.attempt > acked.attempt)
}

fn fingerprint(payload: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    payload.hash(&mut hasher);
    hasher.finish()
}

/// A consumer group's deliveries and settles, as its members recorded them.
#[derive(Debug, Default)]
pub struct GroupLedger {
    messages: BTreeMap<String, BTreeMap<u64, GroupMessage>>,
    deliveries: u64,
    redeliveries: u64,
    confirmed_acks: u64,
    violations: Vec<Violation>,
}

impl GroupLedger {
    /// An empty ledger.
    pub fn new() -> GroupLedger {
        GroupLedger::default()
    }

    /// Records a delivery a member received. A delivery after a confirmed
    /// ack, the same attempt twice in one life, or other bytes than an
    /// earlier delivery of the message are violations.
    pub fn delivered(&mut self, message: &Delivered, attempt: Attempt) {
        self.deliveries += 1;
        let at = At::new(&message.topic, message.offset);
        let print = fingerprint(&message.payload);
        let entry = self
            .messages
            .entry(message.topic.clone())
            .or_default()
            .entry(message.offset)
            .or_insert_with(|| GroupMessage {
                fingerprint: print,
                deliveries: Vec::new(),
                acked: None,
                ack_in_doubt: false,
            });
        if !entry.deliveries.is_empty() {
            self.redeliveries += 1;
        }
        if let Some(acked) = entry.acked.filter(|a| newer(attempt, *a)) {
            self.violations.push(Violation::RedeliveredAfterAck {
                at: at.clone(),
                acked,
                delivered: attempt,
            });
        }
        if entry.deliveries.contains(&attempt) {
            self.violations.push(Violation::DeliveredTwice {
                at: at.clone(),
                attempt,
            });
        }
        if entry.fingerprint != print {
            self.violations.push(Violation::DeliveryDiffers {
                at,
                delivered: attempt,
            });
        }
        entry.deliveries.push(attempt);
    }

    /// Records a settle of delivery `attempt` of `topic@offset` and the
    /// broker's answer. A confirmed ack of a delivery that a newer one had
    /// already replaced is a violation too: the broker took a stale ack.
    pub fn settled(
        &mut self,
        topic: &str,
        offset: u64,
        attempt: Attempt,
        kind: SettleKind,
        answer: SettleAnswer,
    ) {
        if kind != SettleKind::Ack {
            return;
        }
        let at = At::new(topic, offset);
        let Some(entry) = self
            .messages
            .get_mut(topic)
            .and_then(|t| t.get_mut(&offset))
        else {
            self.violations.push(Violation::Other(format!(
                "{at} was settled but never recorded as delivered"
            )));
            return;
        };
        match answer {
            SettleAnswer::Confirmed => {
                self.confirmed_acks += 1;
                if let Some(first) = entry.acked {
                    self.violations.push(Violation::Other(format!(
                        "acks of {at} were confirmed twice: {first}, then {attempt}"
                    )));
                }
                if let Some(later) = entry.deliveries.iter().find(|d| newer(**d, attempt)) {
                    self.violations.push(Violation::RedeliveredAfterAck {
                        at,
                        acked: attempt,
                        delivered: *later,
                    });
                }
                entry.acked = Some(attempt);
            }
            SettleAnswer::InDoubt => entry.ack_in_doubt = true,
            SettleAnswer::Refused => {}
        }
    }

    /// Deliveries recorded.
    pub fn deliveries(&self) -> u64 {
        self.deliveries
    }

    /// Deliveries of a message delivered before.
    pub fn redeliveries(&self) -> u64 {
        self.redeliveries
    }

    /// Acks the broker confirmed.
    pub fn confirmed_acks(&self) -> u64 {
        self.confirmed_acks
    }

    /// Violations found while recording (taken once).
    pub fn take_violations(&mut self) -> Vec<Violation> {
        std::mem::take(&mut self.violations)
    }

    /// Checks the deliveries of `topic` from offset `from` on against
    /// `stored`, the topic's log read from `from` to its end: each delivery
    /// carried the bytes stored at its offset, and none is past the end.
    pub fn check_log(&self, topic: &str, from: u64, stored: &[Delivered]) -> Vec<Violation> {
        let Some(messages) = self.messages.get(topic) else {
            return Vec::new();
        };
        let mut violations = Vec::new();
        for (offset, message) in messages.range(from..) {
            let at = At::new(topic, *offset);
            let first = message.deliveries[0];
            match stored.get((offset - from) as usize) {
                Some(m) if m.offset == *offset => {
                    if fingerprint(&m.payload) != message.fingerprint {
                        violations.push(Violation::DeliveryDiffers {
                            at,
                            delivered: first,
                        });
                    }
                }
                // Offsets that are not dense are reported by the log check.
                Some(_) => {}
                None => violations.push(Violation::DeliveredPastEnd {
                    at,
                    delivered: first,
                }),
            }
        }
        violations
    }

    /// Checks, once the group has nothing left to deliver, that every
    /// message of `topic` below `end` was acked: confirmed, or sent when
    /// the broker died (it may have applied it).
    pub fn check_all_acked(&self, topic: &str, end: u64) -> Vec<Violation> {
        let messages = self.messages.get(topic);
        (0..end)
            .filter_map(|offset| {
                let message = messages.and_then(|m| m.get(&offset));
                let done = message.is_some_and(|m| m.acked.is_some() || m.ack_in_doubt);
                (!done).then(|| Violation::NeverAcked {
                    at: At::new(topic, offset),
                    deliveries: message.map_or(0, |m| m.deliveries.len()),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn message(offset: u64, payload: &'static str, attempt: u32) -> Delivered {
        Delivered {
            topic: "t".into(),
            offset,
            timestamp_ms: 0,
            key: None,
            headers: Vec::new(),
            payload: Bytes::from_static(payload.as_bytes()),
            id: None,
            attempt,
        }
    }

    fn at(life: u32, attempt: u32) -> Attempt {
        Attempt { life, attempt }
    }

    #[test]
    fn redeliveries_of_unconfirmed_acks_are_allowed() {
        let mut g = GroupLedger::new();
        g.delivered(&message(0, "a", 1), at(1, 1));
        g.settled("t", 0, at(1, 1), SettleKind::Ack, SettleAnswer::InDoubt);
        g.delivered(&message(1, "b", 1), at(1, 1));
        g.settled("t", 1, at(1, 1), SettleKind::Nack, SettleAnswer::Confirmed);
        // The broker died: both come back in the next life.
        g.delivered(&message(0, "a", 2), at(2, 2));
        g.delivered(&message(1, "b", 2), at(2, 2));
        g.settled("t", 1, at(2, 2), SettleKind::Ack, SettleAnswer::Confirmed);
        assert_eq!(g.take_violations(), vec![]);
        assert_eq!(g.check_all_acked("t", 2), vec![]);
        assert_eq!((g.redeliveries(), g.confirmed_acks()), (2, 1));
    }

    #[test]
    fn a_delivery_after_a_confirmed_ack_is_a_violation() {
        let mut g = GroupLedger::new();
        g.delivered(&message(0, "a", 1), at(1, 1));
        g.settled("t", 0, at(1, 1), SettleKind::Ack, SettleAnswer::Confirmed);
        // A late copy of the same attempt is not a redelivery.
        g.delivered(&message(0, "a", 1), at(1, 1));
        let late = g.take_violations();
        assert!(
            matches!(late[..], [Violation::DeliveredTwice { .. }]),
            "{late:?}"
        );
        g.delivered(&message(0, "a", 2), at(2, 2));
        assert_eq!(
            g.take_violations(),
            vec![Violation::RedeliveredAfterAck {
                at: At::new("t", 0),
                acked: at(1, 1),
                delivered: at(2, 2),
            }]
        );
    }

    #[test]
    fn a_confirmed_stale_ack_is_a_violation() {
        let mut g = GroupLedger::new();
        g.delivered(&message(0, "a", 1), at(1, 1));
        g.delivered(&message(0, "a", 2), at(1, 2));
        g.settled("t", 0, at(1, 1), SettleKind::Ack, SettleAnswer::Confirmed);
        assert_eq!(g.take_violations().len(), 1);
    }

    #[test]
    fn deliveries_are_checked_against_the_log_and_lost_ones_found() {
        let mut g = GroupLedger::new();
        g.delivered(&message(0, "a", 1), at(1, 1));
        g.delivered(&message(1, "x", 1), at(1, 1));
        g.delivered(&message(3, "d", 1), at(1, 1));
        let log = [message(0, "a", 0), message(1, "b", 0), message(2, "c", 0)];
        let found = g.check_log("t", 0, &log);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(matches!(found[0], Violation::DeliveryDiffers { .. }));
        g.settled("t", 0, at(1, 1), SettleKind::Ack, SettleAnswer::Confirmed);
        assert_eq!(
            g.check_all_acked("t", 3)
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>(),
            vec![
                "t@1 was never acked by the group (1 deliveries) but the group has nothing left to deliver",
                "t@2 was never acked by the group (0 deliveries) but the group has nothing left to deliver",
            ]
        );
    }
}
