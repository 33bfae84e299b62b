//! [`Ledger`]: the publishes of a history, as the clients saw them (what was
//! sent, where each acked one was stored), and the check of a topic's log
//! against them.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use sluice_client::Delivered;

use super::violation::{At, Violation};

/// What clients sent and what the broker acked. Payloads are unique: a
/// message is known by its bytes (a retry sends the same bytes again).
#[derive(Debug, Default)]
pub struct Ledger {
    /// Every message ever sent, by payload: the topic it was sent to.
    sent: HashMap<Bytes, String>,
    /// Acked publishes per topic: offset to payload.
    acked: BTreeMap<String, BTreeMap<u64, Bytes>>,
    /// Publish acks received (a duplicate ack counts again).
    acks: u64,
    /// Contradictions found while recording.
    violations: Vec<Violation>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// Records that `payload` was sent to `topic` (before it is sent).
    pub fn sent(&mut self, topic: &str, payload: &Bytes) {
        self.sent
            .entry(payload.clone())
            .or_insert_with(|| topic.to_owned());
    }

    /// Records the broker's ack: `payload` is stored at `topic@offset`. A
    /// second ack of another message at the same offset is a violation.
    pub fn acked(&mut self, topic: &str, offset: u64, payload: &Bytes) {
        self.acks += 1;
        let offsets = self.acked.entry(topic.to_owned()).or_default();
        match offsets.get(&offset) {
            Some(first) if first != payload => {
                self.violations.push(Violation::ConflictingAcks {
                    at: At::new(topic, offset),
                    first: first.clone(),
                    second: payload.clone(),
                });
            }
            Some(_) => {}
            None => {
                offsets.insert(offset, payload.clone());
            }
        }
    }

    /// Publish acks received so far.
    pub fn acks(&self) -> u64 {
        self.acks
    }

    /// Distinct messages sent so far.
    pub fn sent_count(&self) -> usize {
        self.sent.len()
    }

    /// The payload acked at `topic@offset`, if one was.
    pub fn acked_at(&self, topic: &str, offset: u64) -> Option<&Bytes> {
        self.acked.get(topic)?.get(&offset)
    }

    /// Contradictions among the acks themselves (taken once).
    pub fn take_violations(&mut self) -> Vec<Violation> {
        std::mem::take(&mut self.violations)
    }

    /// Checks `stored`, the messages of `topic` read from offset `from` to
    /// the end of its log:
    /// - offsets are dense from `from`;
    /// - every publish acked at an offset from `from` on is there, with its
    ///   bytes;
    /// - every stored message was sent to this topic and is stored once
    ///   (within what was read).
    pub fn check_log(&self, topic: &str, from: u64, stored: &[Delivered]) -> Vec<Violation> {
        let mut violations = Vec::new();
        if let Some((expected, message)) = (from..)
            .zip(stored)
            .find(|(expected, m)| m.offset != *expected)
        {
            violations.push(Violation::Gap {
                topic: topic.to_owned(),
                expected,
                found: message.offset,
            });
        }
        let by_offset: HashMap<u64, &Delivered> = stored.iter().map(|m| (m.offset, m)).collect();
        for (offset, payload) in self
            .acked
            .get(topic)
            .into_iter()
            .flat_map(|a| a.range(from..))
        {
            let at = At::new(topic, *offset);
            match by_offset.get(offset) {
                None => violations.push(Violation::Missing {
                    at,
                    payload: payload.clone(),
                }),
                Some(m) if m.payload != payload => violations.push(Violation::Changed {
                    at,
                    acked: payload.clone(),
                    stored: m.payload.clone(),
                }),
                Some(_) => {}
            }
        }
        let mut seen: HashMap<&Bytes, u64> = HashMap::new();
        for m in stored {
            let at = At::new(&m.topic, m.offset);
            if m.topic != topic || self.sent.get(&m.payload).is_none_or(|t| t != topic) {
                violations.push(Violation::Unknown {
                    at,
                    payload: m.payload.clone(),
                });
            } else if let Some(first) = seen.insert(&m.payload, m.offset) {
                violations.push(Violation::StoredTwice {
                    first: At::new(topic, first),
                    second: at,
                    payload: m.payload.clone(),
                });
            }
        }
        violations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(topic: &str, offset: u64, payload: &str) -> Delivered {
        Delivered {
            topic: topic.to_owned(),
            offset,
            timestamp_ms: 0,
            key: None,
            headers: Vec::new(),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            id: None,
            attempt: 0,
        }
    }

    fn ledger(sent: &[&str], acked: &[(u64, &str)]) -> Ledger {
        let mut ledger = Ledger::new();
        for p in sent {
            ledger.sent("t", &Bytes::copy_from_slice(p.as_bytes()));
        }
        for (offset, p) in acked {
            ledger.acked("t", *offset, &Bytes::copy_from_slice(p.as_bytes()));
        }
        ledger
    }

    #[test]
    fn a_log_holding_every_ack_once_passes() {
        let ledger = ledger(&["a", "b", "c"], &[(0, "a"), (2, "c")]);
        let log = [
            stored("t", 0, "a"),
            stored("t", 1, "b"),
            stored("t", 2, "c"),
        ];
        assert_eq!(ledger.check_log("t", 0, &log), vec![]);
        assert_eq!(ledger.check_log("t", 1, &log[1..]), vec![]);
    }

    #[test]
    fn a_lost_or_changed_ack_is_reported() {
        let ledger = ledger(&["a", "b", "c"], &[(0, "a"), (1, "b"), (2, "c")]);
        let log = [stored("t", 0, "a"), stored("t", 1, "c")];
        assert_eq!(
            ledger.check_log("t", 0, &log),
            vec![
                Violation::Changed {
                    at: At::new("t", 1),
                    acked: Bytes::from_static(b"b"),
                    stored: Bytes::from_static(b"c"),
                },
                Violation::Missing {
                    at: At::new("t", 2),
                    payload: Bytes::from_static(b"c"),
                },
            ]
        );
    }

    #[test]
    fn holes_repeats_and_strangers_are_reported() {
        let ledger = ledger(&["a", "b"], &[]);
        let log = [
            stored("t", 0, "a"),
            stored("t", 2, "a"),
            stored("t", 3, "z"),
        ];
        assert_eq!(
            ledger.check_log("t", 0, &log),
            vec![
                Violation::Gap {
                    topic: "t".into(),
                    expected: 1,
                    found: 2
                },
                Violation::StoredTwice {
                    first: At::new("t", 0),
                    second: At::new("t", 2),
                    payload: Bytes::from_static(b"a"),
                },
                Violation::Unknown {
                    at: At::new("t", 3),
                    payload: Bytes::from_static(b"z"),
                },
            ]
        );
    }

    #[test]
    fn two_acks_for_one_offset_conflict() {
        let mut ledger = ledger(&["a", "b"], &[(0, "a"), (0, "a")]);
        assert_eq!(ledger.take_violations(), vec![]);
        ledger.acked("t", 0, &Bytes::from_static(b"b"));
        assert_eq!(ledger.take_violations().len(), 1);
        assert_eq!(ledger.acks(), 3);
    }
}
