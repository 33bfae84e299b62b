//! Consumer groups: joining one, settling what it delivered, and what the
//! broker reports about a group, its members and its position per topic.

use serde::{Deserialize, Serialize};

use super::delivery::{DeliveryPlugin, StartPosition};

/// Settings of a consumer group, fixed when the group is created by its
/// first consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupOptions {
    /// Where a new group starts on the topics that exist when it is created
    /// (topics created later are read from their start).
    #[serde(default = "GroupOptions::default_start")]
    pub start: StartPosition,
    /// An unacked delivery comes back after this long (ms).
    #[serde(default = "GroupOptions::default_ack_wait_ms")]
    pub ack_wait_ms: u64,
    /// Delay before the n-th redelivery (ms); the last value repeats.
    #[serde(default = "GroupOptions::default_backoff_ms")]
    pub backoff_ms: Vec<u64>,
    /// Deliveries of one message before it goes to the dead-letter topic.
    #[serde(default = "GroupOptions::default_max_deliver")]
    pub max_deliver: u32,
    /// At most one message per key in flight in the group at a time.
    #[serde(default)]
    pub key_ordered: bool,
    /// Dead-letter topic; `None` means `dlq.<original topic>`.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
}

impl GroupOptions {
    fn default_start() -> StartPosition {
        StartPosition::Earliest
    }
    fn default_ack_wait_ms() -> u64 {
        30_000
    }
    fn default_backoff_ms() -> Vec<u64> {
        vec![1_000, 5_000, 30_000]
    }
    fn default_max_deliver() -> u32 {
        5
    }
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            start: Self::default_start(),
            ack_wait_ms: Self::default_ack_wait_ms(),
            backoff_ms: Self::default_backoff_ms(),
            max_deliver: Self::default_max_deliver(),
            key_ordered: false,
            dead_letter_topic: None,
        }
    }
}

/// Join a consumer group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consume {
    /// Chosen by the client, unique among its subscriptions and consumers
    /// on this connection; names the delivery stream.
    pub consumer: u64,
    /// The group (same rules as a topic name).
    pub group: String,
    /// The topic or pattern the group consumes; must match the group's.
    pub pattern: String,
    /// Group settings, used if this consumer creates the group.
    #[serde(default)]
    pub options: GroupOptions,
    /// Most unsettled deliveries this member holds at once (credits).
    pub max_in_flight: u32,
    /// Deliveries this member takes in all; then it gets no more (it stays
    /// a member until it leaves). `None`: no limit.
    #[serde(default)]
    pub limit: Option<u64>,
    /// A loaded plugin that filters or transforms what this member
    /// receives: messages it filters out are acked for the member.
    #[serde(default)]
    pub plugin: Option<DeliveryPlugin>,
}

/// What to do with a delivered message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SettleAction {
    /// Done: never deliver it again.
    Ack,
    /// Failed: deliver it again after `delay_ms`, or after the group's
    /// backoff when `None`.
    Nack {
        /// Delay before redelivery.
        delay_ms: Option<u64>,
    },
    /// Poison: move it to the dead-letter topic now.
    Reject {
        /// Why, stored in a header of the dead letter.
        reason: String,
    },
    /// Still working: restart the ack-wait clock.
    InProgress,
}

/// Settle one delivered message.
///
/// A settlement answers one delivery: the one made to `consumer` (this
/// connection's consumer id, as in [`Consume::consumer`]) as attempt
/// `attempt` ([`crate::Delivered::attempt`]). The broker refuses it with
/// `stale_settle` when that delivery is no longer the one in flight: the
/// ack wait ran out, or the message went to another member or came back
/// as a later attempt. Without `consumer` (clients before these fields)
/// any consumer of the group on this connection may hold the message;
/// without `attempt` any attempt it holds is answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settle {
    /// The group that delivered it.
    pub group: String,
    /// Its topic.
    pub topic: String,
    /// Its offset.
    pub offset: u64,
    /// What to do.
    pub action: SettleAction,
    /// The consumer it was delivered to, on this connection.
    #[serde(default)]
    pub consumer: Option<u64>,
    /// The delivery attempt it answers (1 for the first).
    #[serde(default)]
    pub attempt: Option<u32>,
}

/// Settle several delivered messages of one group, all delivered to one
/// consumer (see [`Settle`] for what ties a settlement to its delivery).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettleBatch {
    /// The group that delivered them.
    pub group: String,
    /// What to do with each.
    pub items: Vec<SettleItem>,
    /// The consumer they were delivered to, on this connection.
    #[serde(default)]
    pub consumer: Option<u64>,
}

/// One settlement of a [`SettleBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettleItem {
    /// Its topic.
    pub topic: String,
    /// Its offset.
    pub offset: u64,
    /// What to do.
    pub action: SettleAction,
    /// The delivery attempt it answers (1 for the first).
    #[serde(default)]
    pub attempt: Option<u32>,
}

/// One member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Member id within the group.
    pub id: u64,
    /// The client's name.
    pub client: String,
    /// Unsettled deliveries it holds.
    pub in_flight: u32,
    /// Its credit limit.
    pub max_in_flight: u32,
    /// Deliveries made to it.
    pub delivered: u64,
}

/// A group's position on one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupTopicInfo {
    /// The topic.
    pub topic: String,
    /// Every offset below this is settled.
    pub ack_floor: u64,
    /// The next offset the group will read.
    pub cursor: u64,
    /// The topic's end.
    pub end_offset: u64,
    /// Messages not yet delivered (`end_offset - cursor`).
    pub lag: u64,
    /// Delivered and not settled.
    pub pending: u64,
}

/// What the broker knows about a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// The group.
    pub name: String,
    /// What it consumes.
    pub pattern: String,
    /// Its settings.
    pub options: GroupOptions,
    /// Connected members.
    pub members: Vec<MemberInfo>,
    /// Position per topic.
    pub topics: Vec<GroupTopicInfo>,
    /// Redeliveries since the broker started.
    pub redeliveries: u64,
    /// Messages moved to the dead-letter topic since the broker started.
    pub dead_lettered: u64,
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::frame::{decode_one, encode};

    /// A [`Settle`] as clients sent it before it named its delivery.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct SettleBefore {
        group: String,
        topic: String,
        offset: u64,
        action: SettleAction,
    }

    #[test]
    fn settles_with_and_without_their_delivery_read_both_ways() {
        let max = crate::DEFAULT_MAX_FRAME_BYTES;
        let before = SettleBefore {
            group: "workers".into(),
            topic: "orders".into(),
            offset: 3,
            action: SettleAction::Ack,
        };
        let now: Settle = decode_one(&encode(&before, max).unwrap(), max).unwrap();
        assert_eq!((now.consumer, now.attempt), (None, None));
        let named = Settle {
            consumer: Some(7),
            attempt: Some(2),
            ..now
        };
        let back: Settle = decode_one(&encode(&named, max).unwrap(), max).unwrap();
        assert_eq!(back, named);
        // A broker that predates the fields reads the rest.
        let old: SettleBefore = decode_one(&encode(&named, max).unwrap(), max).unwrap();
        assert_eq!(old, before);
    }
}
