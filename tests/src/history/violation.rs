//! [`Violation`]: one way in which what the broker stores or delivers
//! differs from what it acknowledged, as the history checker reports it.

use std::fmt;

use bytes::Bytes;

/// Where a message is: `topic@offset`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct At {
    /// The topic.
    pub topic: String,
    /// The offset.
    pub offset: u64,
}

impl At {
    /// `topic@offset`.
    pub fn new(topic: &str, offset: u64) -> At {
        At {
            topic: topic.to_owned(),
            offset,
        }
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.topic, self.offset)
    }
}

/// A group delivery or settle in the history: the broker run it happened
/// in (a life ends with a kill) and the delivery attempt it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// The broker's life (run), counted from 1.
    pub life: u32,
    /// The delivery attempt the broker numbered it with.
    pub attempt: u32,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt {} in life {}", self.attempt, self.life)
    }
}

/// Something the broker acknowledged that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// The offsets read are not dense: a hole or a repeat.
    Gap {
        /// The topic.
        topic: String,
        /// The offset that should have come next.
        expected: u64,
        /// The one that came.
        found: u64,
    },
    /// A publish was acked at an offset that the log does not reach.
    Missing {
        /// Where the ack said it is.
        at: At,
        /// The acked payload.
        payload: Bytes,
    },
    /// The log holds other bytes than the acked publish at its offset.
    Changed {
        /// Where the ack said it is.
        at: At,
        /// The acked payload.
        acked: Bytes,
        /// What is stored there.
        stored: Bytes,
    },
    /// Two acks named the same offset for different messages.
    ConflictingAcks {
        /// The offset.
        at: At,
        /// The first acked payload.
        first: Bytes,
        /// The second.
        second: Bytes,
    },
    /// One message is stored at two offsets.
    StoredTwice {
        /// The first copy.
        first: At,
        /// The second copy.
        second: At,
        /// The payload.
        payload: Bytes,
    },
    /// The log holds a message nobody sent (or sent to another topic).
    Unknown {
        /// Where it is.
        at: At,
        /// Its payload.
        payload: Bytes,
    },
    /// A group delivered a message again after its ack was confirmed.
    RedeliveredAfterAck {
        /// The message.
        at: At,
        /// The confirmed ack.
        acked: Attempt,
        /// The delivery after it.
        delivered: Attempt,
    },
    /// A group delivered the same attempt of a message twice in one life.
    DeliveredTwice {
        /// The message.
        at: At,
        /// The attempt.
        attempt: Attempt,
    },
    /// A group delivered other bytes than the log holds at that offset.
    DeliveryDiffers {
        /// The message.
        at: At,
        /// The delivery whose bytes differ.
        delivered: Attempt,
    },
    /// A group delivered an offset that the log does not reach.
    DeliveredPastEnd {
        /// The message.
        at: At,
        /// Its first delivery.
        delivered: Attempt,
    },
    /// A message stored in a group's topic was never acked by the group,
    /// yet the group has nothing more to deliver: it was lost to the group.
    NeverAcked {
        /// The message.
        at: At,
        /// How often it was delivered.
        deliveries: usize,
    },
    /// Something else the broker answered that contradicts the history.
    Other(String),
}

impl Violation {
    /// What kind of violation, in a few words (for a summary by kind).
    pub fn kind(&self) -> &'static str {
        match self {
            Violation::Gap { .. } => "offsets not dense",
            Violation::Missing { .. } => "acked publish missing",
            Violation::Changed { .. } => "acked publish changed",
            Violation::ConflictingAcks { .. } => "two acks for one offset",
            Violation::StoredTwice { .. } => "message stored twice",
            Violation::Unknown { .. } => "message never sent",
            Violation::RedeliveredAfterAck { .. } => "group delivery after a confirmed ack",
            Violation::DeliveredTwice { .. } => "group attempt delivered twice",
            Violation::DeliveryDiffers { .. } => "group delivery differs from the log",
            Violation::DeliveredPastEnd { .. } => "group delivery past the end of the log",
            Violation::NeverAcked { .. } => "group message never acked",
            Violation::Other(_) => "other",
        }
    }
}

/// The start of a payload, readable, for a report.
fn shown(payload: &Bytes) -> String {
    const SHOWN: usize = 48;
    let text = String::from_utf8_lossy(&payload[..payload.len().min(SHOWN)]);
    if payload.len() > SHOWN {
        format!("{text:?}... ({} bytes)", payload.len())
    } else {
        format!("{text:?}")
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Gap {
                topic,
                expected,
                found,
            } => write!(
                f,
                "offsets of {topic} are not dense: expected {expected}, read {found}"
            ),
            Violation::Missing { at, payload } => write!(
                f,
                "acked publish {} at {at} is missing: the log ends before it",
                shown(payload)
            ),
            Violation::Changed { at, acked, stored } => write!(
                f,
                "acked publish {} at {at} reads back as {}",
                shown(acked),
                shown(stored)
            ),
            Violation::ConflictingAcks { at, first, second } => write!(
                f,
                "two publishes were acked at {at}: {} and {}",
                shown(first),
                shown(second)
            ),
            Violation::StoredTwice {
                first,
                second,
                payload,
            } => write!(
                f,
                "message {} is stored twice, at {first} and at {second}",
                shown(payload)
            ),
            Violation::Unknown { at, payload } => write!(
                f,
                "{at} holds {}, which was never sent to that topic",
                shown(payload)
            ),
            Violation::RedeliveredAfterAck {
                at,
                acked,
                delivered,
            } => write!(
                f,
                "group delivered {at} again ({delivered}) after its ack ({acked}) was confirmed"
            ),
            Violation::DeliveredTwice { at, attempt } => {
                write!(f, "group delivered {at} twice as {attempt}")
            }
            Violation::DeliveryDiffers { at, delivered } => write!(
                f,
                "group delivered other bytes for {at} ({delivered}) than the log holds"
            ),
            Violation::DeliveredPastEnd { at, delivered } => write!(
                f,
                "group delivered {at} ({delivered}), past the end of the log"
            ),
            Violation::NeverAcked { at, deliveries } => write!(
                f,
                "{at} was never acked by the group ({deliveries} deliveries) but the group has nothing left to deliver"
            ),
            Violation::Other(what) => f.write_str(what),
        }
    }
}
