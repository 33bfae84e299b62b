//! [`Violation`]: one way in which what the broker stores or delivers
//! differs from what it acknowledged, as the history checkers report it.
//! The crash checker knows messages by their bytes; the cluster checker
//! by their ids (`*Id`, `Subscription*`, `Group*` and the variants after
//! [`Violation::Other`]).

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
    /// An acked publish is not in its topic.
    LostWrite {
        /// Its id.
        id: String,
        /// Where its ack said it is.
        acked: At,
    },
    /// An acked publish is stored, but not at the offset its ack named.
    AckedElsewhere {
        /// Its id.
        id: String,
        /// Where its ack said it is.
        acked: At,
        /// Where it is.
        stored: u64,
    },
    /// One message id is stored at several offsets: a duplicate.
    DuplicateId {
        /// The topic.
        topic: String,
        /// The id.
        id: String,
        /// Every offset holding it.
        offsets: Vec<u64>,
    },
    /// The topic holds a message that no publish of the history sent.
    StrangerStored {
        /// Where it is.
        at: At,
        /// Its id, if it has one.
        id: Option<String>,
    },
    /// Two messages of one key are in the opposite order of their
    /// publishing (in the topic, or as a subscription received them).
    KeyOrder {
        /// The key.
        key: String,
        /// Where: `the topic`, or a subscription.
        place: String,
        /// The message published first: its offset and id.
        published_first: (u64, String),
        /// The one published after it, found before it.
        found_before: (u64, String),
    },
    /// A subscription received an offset it had received already.
    SubscriptionRepeat {
        /// The subscription.
        subscription: String,
        /// The offset.
        at: At,
    },
    /// A subscription went back to a lower offset.
    SubscriptionBackwards {
        /// The subscription.
        subscription: String,
        /// The highest offset it had received.
        after: u64,
        /// The lower one that came next.
        at: At,
    },
    /// A subscription skipped offsets the topic holds.
    SubscriptionGap {
        /// The subscription.
        subscription: String,
        /// The topic.
        topic: String,
        /// The offset that should have come next.
        expected: u64,
        /// The one that came (the topic's end if none did).
        found: u64,
    },
    /// A subscription received other than the topic holds at an offset
    /// (`stored` is `None` past the topic's end).
    SubscriptionDiffers {
        /// The subscription.
        subscription: String,
        /// The offset.
        at: At,
        /// The id received.
        received: Option<String>,
        /// The id stored there.
        stored: Option<String>,
    },
    /// A subscription failed or ended.
    SubscriptionEnded {
        /// The subscription.
        subscription: String,
        /// How.
        error: String,
    },
    /// A group delivered other than the topic holds at an offset
    /// (`stored` is `None` past the topic's end).
    GroupDeliveryDiffers {
        /// The message.
        at: At,
        /// The delivery attempt.
        attempt: u32,
        /// The id delivered.
        delivered: Option<String>,
        /// The id stored there.
        stored: Option<String>,
    },
    /// A message of the group's topic was neither acked nor dead-lettered
    /// by the end of the run.
    NeverSettled {
        /// The message.
        at: At,
        /// How often it was delivered.
        deliveries: usize,
    },
    /// A message is in the dead-letter topic more than once.
    DeadLetteredTwice {
        /// The message.
        at: At,
        /// Its dead letters.
        copies: usize,
    },
    /// The group still had messages pending or unread at the end.
    GroupNotDrained {
        /// Delivered and not yet settled, as the broker counts them.
        pending: u64,
        /// Not yet settled, read or not.
        lag: u64,
    },
    /// A group member's consumer failed or ended.
    MemberEnded {
        /// The member.
        member: usize,
        /// How.
        error: String,
    },
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
            Violation::LostWrite { .. } => "acked publish lost",
            Violation::AckedElsewhere { .. } => "acked publish stored elsewhere",
            Violation::DuplicateId { .. } => "message id stored twice",
            Violation::StrangerStored { .. } => "message never published",
            Violation::KeyOrder { .. } => "key order broken",
            Violation::SubscriptionRepeat { .. } => "subscription repeated an offset",
            Violation::SubscriptionBackwards { .. } => "subscription went backwards",
            Violation::SubscriptionGap { .. } => "subscription skipped offsets",
            Violation::SubscriptionDiffers { .. } => "subscription differs from the log",
            Violation::SubscriptionEnded { .. } => "subscription ended",
            Violation::GroupDeliveryDiffers { .. } => "group delivery differs from the log",
            Violation::NeverSettled { .. } => "group message never settled",
            Violation::DeadLetteredTwice { .. } => "message dead-lettered twice",
            Violation::GroupNotDrained { .. } => "group not drained",
            Violation::MemberEnded { .. } => "group member ended",
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
            Violation::LostWrite { id, acked } => {
                write!(f, "acked publish {id:?} (acked at {acked}) is not in the topic")
            }
            Violation::AckedElsewhere { id, acked, stored } => write!(
                f,
                "acked publish {id:?} was acked at {acked} but is stored at offset {stored}"
            ),
            Violation::DuplicateId { topic, id, offsets } => {
                write!(f, "message {id:?} is stored more than once in {topic}, at offsets {offsets:?}")
            }
            Violation::StrangerStored { at, id } => {
                write!(f, "{at} holds id {id:?}, which no publish of the history sent")
            }
            Violation::KeyOrder {
                key,
                place,
                published_first: (first_offset, first),
                found_before: (before_offset, before),
            } => write!(
                f,
                "key {key:?} out of order in {place}: {first:?} was published before {before:?} but is at offset {first_offset}, after {before_offset}"
            ),
            Violation::SubscriptionRepeat { subscription, at } => {
                write!(f, "subscription {subscription} received {at} twice in a row")
            }
            Violation::SubscriptionBackwards {
                subscription,
                after,
                at,
            } => write!(
                f,
                "subscription {subscription} received {at} after offset {after}"
            ),
            Violation::SubscriptionGap {
                subscription,
                topic,
                expected,
                found,
            } => write!(
                f,
                "subscription {subscription} skipped {topic}@{expected}..{found}: expected {expected}, received {found}"
            ),
            Violation::SubscriptionDiffers {
                subscription,
                at,
                received,
                stored,
            } => write!(
                f,
                "subscription {subscription} received {received:?} at {at}, where the topic holds {stored:?}"
            ),
            Violation::SubscriptionEnded {
                subscription,
                error,
            } => write!(f, "subscription {subscription} ended: {error}"),
            Violation::GroupDeliveryDiffers {
                at,
                attempt,
                delivered,
                stored,
            } => write!(
                f,
                "group delivered {delivered:?} at {at} (attempt {attempt}), where the topic holds {stored:?}"
            ),
            Violation::NeverSettled { at, deliveries } => write!(
                f,
                "{at} was neither acked nor dead-lettered by the end ({deliveries} deliveries)"
            ),
            Violation::DeadLetteredTwice { at, copies } => {
                write!(f, "{at} is in the dead-letter topic {copies} times")
            }
            Violation::GroupNotDrained { pending, lag } => write!(
                f,
                "the group was not drained at the end: {pending} pending, {lag} not settled"
            ),
            Violation::MemberEnded { member, error } => {
                write!(f, "group member {member} ended: {error}")
            }
        }
    }
}
