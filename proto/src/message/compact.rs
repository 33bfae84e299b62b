//! The compact layouts, negotiated in the handshake: a publish, its
//! acknowledgement and a delivery with the topic written once per run of
//! messages and each message as an array rather than a map. They carry the
//! same content as the plain frames and convert to and from them.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::delivery::Delivered;
use super::publish::{MessageOutcome, PublishAck, StoredAt};

/// A publish in the compact layout: runs of messages of one topic. Messages
/// of one topic are stored in order across runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishCompact {
    /// The runs, in publish order.
    pub runs: Vec<PublishRun>,
}

/// Consecutive published messages of one topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishRun {
    /// Their topic.
    pub topic: String,
    /// The messages.
    pub messages: Vec<CompactMessage>,
}

/// One published message as an array: key, headers, payload, producer id
/// (see [`PublishMessage`](super::publish::PublishMessage)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompactMessage(
    pub Option<Bytes>,
    pub Vec<(String, String)>,
    pub Bytes,
    pub Option<String>,
);

/// A publish acknowledgement in the compact layout: messages stored once,
/// in their own topic at consecutive offsets, as ranges; every other
/// outcome by its message's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactAck {
    /// Ranges of messages stored at consecutive offsets of one topic.
    pub stored: Vec<StoredRange>,
    /// The other outcomes (routed, duplicate, dropped, rejected, ...).
    pub others: Vec<(u32, MessageOutcome)>,
}

/// Messages `first..first + count` of a publish, stored in `topic` from
/// `offset` on: an array of first index, count, topic, first offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRange(pub u32, pub u32, pub String, pub u64);

impl CompactAck {
    /// The compact form of an acknowledgement.
    pub fn from_ack(ack: PublishAck) -> CompactAck {
        let mut out = CompactAck {
            stored: Vec::new(),
            others: Vec::new(),
        };
        for (i, outcome) in ack.outcomes.into_iter().enumerate() {
            let i = i as u32;
            match outcome {
                MessageOutcome::Stored(places) => match <[StoredAt; 1]>::try_from(places) {
                    Ok([at]) if !at.duplicate && at.deliver_at_ms.is_none() => {
                        match out.stored.last_mut() {
                            Some(r)
                                if r.0.checked_add(r.1) == Some(i)
                                    && r.2 == at.topic
                                    && r.3.checked_add(u64::from(r.1)) == Some(at.offset) =>
                            {
                                r.1 += 1;
                            }
                            _ => out.stored.push(StoredRange(i, 1, at.topic, at.offset)),
                        }
                    }
                    Ok([at]) => out.others.push((i, MessageOutcome::Stored(vec![at]))),
                    Err(places) => out.others.push((i, MessageOutcome::Stored(places))),
                },
                other => out.others.push((i, other)),
            }
        }
        out
    }

    /// The plain acknowledgement of a publish of `count` messages, or why
    /// this one does not describe exactly `count` messages.
    pub fn into_ack(self, count: usize) -> Result<PublishAck, String> {
        let mut outcomes: Vec<Option<MessageOutcome>> = vec![None; count];
        let mut set = |i: usize, outcome: MessageOutcome| -> Result<(), String> {
            match outcomes.get_mut(i) {
                Some(slot @ None) => {
                    *slot = Some(outcome);
                    Ok(())
                }
                Some(Some(_)) => Err(format!("message {i} is acknowledged twice")),
                None => Err(format!("message {i} is out of range ({count} published)")),
            }
        };
        for StoredRange(first, n, topic, offset) in self.stored {
            // From the peer: a range past the end of the offsets is refused,
            // not wrapped around (or a panic in a debug build).
            if offset.checked_add(u64::from(n.saturating_sub(1))).is_none() {
                return Err(format!(
                    "messages {first}.. are acknowledged past the last offset"
                ));
            }
            for k in 0..n {
                set(
                    first as usize + k as usize,
                    MessageOutcome::Stored(vec![StoredAt {
                        topic: topic.clone(),
                        offset: offset + u64::from(k),
                        duplicate: false,
                        deliver_at_ms: None,
                    }]),
                )?;
            }
        }
        for (i, outcome) in self.others {
            set(i as usize, outcome)?;
        }
        let outcomes = outcomes
            .into_iter()
            .enumerate()
            .map(|(i, o)| o.ok_or_else(|| format!("message {i} is not acknowledged")))
            .collect::<Result<_, _>>()?;
        Ok(PublishAck { outcomes })
    }
}

/// Consecutive delivered messages of one topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRun {
    /// Their topic.
    pub topic: String,
    /// The messages.
    pub messages: Vec<CompactDelivered>,
}

/// One delivered message as a MessagePack array: offset, timestamp (ms),
/// key, headers, payload, producer id, attempt (see [`Delivered`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompactDelivered(
    pub u64,
    pub i64,
    pub Option<Bytes>,
    pub Vec<(String, String)>,
    pub Bytes,
    pub Option<String>,
    pub u32,
);

impl DeliveryRun {
    /// The run's messages in the plain form.
    pub fn into_delivered(self) -> impl Iterator<Item = Delivered> {
        let topic = self.topic;
        self.messages.into_iter().map(move |m| Delivered {
            topic: topic.clone(),
            offset: m.0,
            timestamp_ms: m.1,
            key: m.2,
            headers: m.3,
            payload: m.4,
            id: m.5,
            attempt: m.6,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode;

    #[test]
    fn compact_acks_round_trip_and_refuse_what_does_not_add_up() {
        let at = |topic: &str, offset, duplicate| StoredAt {
            topic: topic.into(),
            offset,
            duplicate,
            deliver_at_ms: None,
        };
        let ack = PublishAck {
            outcomes: vec![
                MessageOutcome::Stored(vec![at("a", 10, false)]),
                MessageOutcome::Stored(vec![at("a", 11, false)]),
                MessageOutcome::Stored(vec![at("b", 0, false)]),
                MessageOutcome::Stored(vec![at("a", 12, true)]),
                MessageOutcome::Dropped,
                MessageOutcome::Stored(vec![at("a", 13, false)]),
                MessageOutcome::Stored(vec![at("x", 1, false), at("y", 2, false)]),
            ],
        };
        let compact = CompactAck::from_ack(ack.clone());
        assert_eq!(
            compact.stored,
            vec![
                StoredRange(0, 2, "a".into(), 10),
                StoredRange(2, 1, "b".into(), 0),
                StoredRange(5, 1, "a".into(), 13)
            ]
        );
        assert_eq!(compact.others.len(), 3);
        let bytes = encode(&compact, 1 << 20).unwrap();
        let back: CompactAck = crate::frame::decode_body(&bytes[4..]).unwrap();
        assert_eq!(back.clone().into_ack(7).unwrap(), ack);
        assert!(back
            .clone()
            .into_ack(6)
            .unwrap_err()
            .contains("out of range"));
        assert!(back
            .into_ack(8)
            .unwrap_err()
            .contains("message 7 is not acknowledged"));
        let twice = CompactAck {
            stored: vec![StoredRange(0, 2, "a".into(), 0)],
            others: vec![(1, MessageOutcome::Dropped)],
        };
        assert!(twice.into_ack(2).unwrap_err().contains("twice"));
    }

    #[test]
    fn compact_acks_near_the_last_offset_neither_wrap_nor_panic() {
        // A peer's range that runs past u64::MAX is refused (it used to
        // overflow: a panic in debug builds, wrapped offsets in release).
        let hostile = CompactAck {
            stored: vec![StoredRange(0, 2, "a".into(), u64::MAX)],
            others: vec![],
        };
        assert!(hostile
            .into_ack(2)
            .unwrap_err()
            .contains("past the last offset"));
        // The very last offset itself is fine.
        let last = CompactAck {
            stored: vec![StoredRange(0, 2, "a".into(), u64::MAX - 1)],
            others: vec![],
        };
        let ack = last.into_ack(2).unwrap();
        assert_eq!(
            ack.outcomes[1],
            MessageOutcome::Stored(vec![StoredAt {
                topic: "a".into(),
                offset: u64::MAX,
                duplicate: false,
                deliver_at_ms: None,
            }])
        );
        // Building one from offsets at the end does not overflow either.
        let at = |offset| {
            MessageOutcome::Stored(vec![StoredAt {
                topic: "a".into(),
                offset,
                duplicate: false,
                deliver_at_ms: None,
            }])
        };
        let ack = PublishAck {
            outcomes: vec![at(u64::MAX), at(0)],
        };
        let compact = CompactAck::from_ack(ack.clone());
        assert_eq!(compact.stored.len(), 2);
        assert_eq!(compact.into_ack(2).unwrap(), ack);
    }
}
