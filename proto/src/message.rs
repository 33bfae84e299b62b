//! The frames of protocol version 1.
//!
//! Compatibility rules: frames are MessagePack maps keyed by field name, so
//! a field added with `#[serde(default)]` is readable by older peers and a
//! missing one by newer peers. Enum variants are named on the wire.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::ErrorBody;

/// Frames a client sends on its control stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientFrame {
    /// The first frame of every connection.
    Hello(Hello),
    /// A request; answered by a [`ServerFrame::Response`] with the same id.
    Request(Request),
}

/// Frames the broker sends on a client's control stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerFrame {
    /// The answer to a successful Hello.
    Welcome(Welcome),
    /// The answer to one request.
    Response(Response),
    /// A connection-level error (bad handshake, malformed frame); the broker
    /// closes the stream or connection after sending it.
    Error(ErrorBody),
}

/// Frames the broker sends on a subscription's unidirectional stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DeliveryFrame {
    /// The first frame: which subscription this stream carries.
    Start {
        /// The id the client chose in [`Subscribe::subscription`].
        subscription: u64,
    },
    /// Messages in offset order per topic.
    Messages {
        /// The messages.
        messages: Vec<Delivered>,
        /// Messages this live subscription missed since the previous frame
        /// because it fell behind (at-most-once delivery).
        #[serde(default)]
        dropped: u64,
    },
    /// Messages in offset order per topic, in the compact layout: the
    /// topic once per run, each message an array. Sent only to clients
    /// that asked for [`FEATURE_COMPACT_DELIVERY`] in their `Hello`.
    Compact {
        /// Runs of messages of one topic, in delivery order.
        runs: Vec<DeliveryRun>,
        /// As in `Messages`.
        #[serde(default)]
        dropped: u64,
    },
    /// The broker ended the subscription; no more frames follow.
    End {
        /// Why, if it was not a normal end.
        error: Option<ErrorBody>,
    },
}

/// The feature a broker lists in `Welcome` when it takes
/// [`RequestBody::PublishCompact`] (clients list it in `Hello` too).
pub const FEATURE_COMPACT_PUBLISH: &str = "compact-publish";

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
/// (see [`PublishMessage`]).
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
                    Ok([at]) if !at.duplicate => match out.stored.last_mut() {
                        Some(r)
                            if r.0.checked_add(r.1) == Some(i)
                                && r.2 == at.topic
                                && r.3.checked_add(u64::from(r.1)) == Some(at.offset) =>
                        {
                            r.1 += 1;
                        }
                        _ => out.stored.push(StoredRange(i, 1, at.topic, at.offset)),
                    },
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

/// The `Hello` feature that asks for [`DeliveryFrame::Compact`].
pub const FEATURE_COMPACT_DELIVERY: &str = "compact-delivery";

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

/// Opens a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The client's protocol version ([`crate::PROTOCOL_VERSION`]).
    pub version: u16,
    /// A bearer token, when the broker requires one.
    #[serde(default)]
    pub token: Option<String>,
    /// A name for logs and metrics.
    #[serde(default)]
    pub client_name: String,
    /// Optional protocol features the client supports
    /// ([`FEATURE_COMPACT_DELIVERY`]); the broker uses those it knows.
    #[serde(default)]
    pub features: Vec<String>,
}

/// Accepts a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// The protocol version the broker will speak.
    pub version: u16,
    /// The broker's name and version, for people.
    pub server: String,
    /// The largest frame body the broker accepts; larger frames are refused.
    pub max_frame_bytes: u32,
    /// The features of the client's `Hello` the broker will use.
    #[serde(default)]
    pub features: Vec<String>,
}

/// One request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the client, unique among its requests in flight.
    pub id: u64,
    /// What is asked.
    pub body: RequestBody,
}

/// What a request asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RequestBody {
    /// Store one message or a batch.
    Publish(Publish),
    /// Start a subscription; deliveries come on a new unidirectional stream.
    Subscribe(Subscribe),
    /// End a subscription.
    Unsubscribe {
        /// The subscription id.
        subscription: u64,
    },
    /// Read stored messages of one topic.
    Fetch(Fetch),
    /// Create a topic.
    CreateTopic(CreateTopic),
    /// Delete a topic and all its messages.
    DeleteTopic {
        /// The topic.
        name: String,
    },
    /// List the topics.
    ListTopics,
    /// Describe one topic.
    TopicInfo {
        /// The topic.
        name: String,
    },
    /// Liveness check.
    Ping,
    /// Join a consumer group as a member; deliveries come on a new
    /// unidirectional stream, like a subscription's.
    Consume(Consume),
    /// Settle one message delivered by a consumer group.
    Settle(Settle),
    /// List the consumer groups.
    ListGroups,
    /// Describe one consumer group.
    GroupInfo {
        /// The group.
        name: String,
    },
    /// Status of every loaded plugin.
    ListPlugins,
    /// Move a group's cursor; pending deliveries are forgotten.
    ResetGroup {
        /// The group.
        name: String,
        /// The new position.
        to: StartPosition,
    },
    /// Settle several messages delivered by one consumer group at once
    /// (clients coalesce pipelined acks into one request). Answered with
    /// one result per item; a broker that predates it answers
    /// `unknown_request`, and clients then settle one at a time.
    SettleBatch(SettleBatch),
    /// Publish in the compact layout (the topic once per run, each message
    /// an array); answered with `PublishedCompact`. Sent only to brokers
    /// whose `Welcome` lists [`FEATURE_COMPACT_PUBLISH`].
    PublishCompact(PublishCompact),
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The request's id.
    pub id: u64,
    /// The outcome.
    pub result: Result<ResponseBody, ErrorBody>,
}

/// A successful outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ResponseBody {
    /// The publish is stored under the broker's fsync policy.
    Published(PublishAck),
    /// The subscription is active.
    Subscribed {
        /// The subscription id.
        subscription: u64,
    },
    /// The subscription has ended.
    Unsubscribed,
    /// Messages read by a fetch.
    Fetched(FetchBatch),
    /// The topic was created.
    TopicCreated(TopicInfo),
    /// The topic was deleted.
    TopicDeleted,
    /// All topics.
    Topics(Vec<TopicInfo>),
    /// One topic.
    TopicInfo(TopicInfo),
    /// Answer to ping.
    Pong,
    /// The consumer has joined its group.
    Consuming {
        /// The consumer id.
        consumer: u64,
    },
    /// The settlement was recorded.
    Settled,
    /// All consumer groups.
    Groups(Vec<GroupInfo>),
    /// One consumer group.
    GroupInfo(GroupInfo),
    /// Every loaded plugin.
    Plugins(Vec<PluginStatus>),
    /// The acknowledgement of a `PublishCompact`.
    PublishedCompact(CompactAck),
    /// The results of a settle batch, in order: `None` settled, or why not.
    SettledBatch {
        /// One per item.
        errors: Vec<Option<ErrorBody>>,
    },
}

/// A message as published.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PublishMessage {
    /// Destination topic.
    pub topic: String,
    /// Optional key (ordering and routing).
    #[serde(default)]
    pub key: Option<Bytes>,
    /// Headers, in order; names may repeat.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The body.
    pub payload: Bytes,
    /// Optional producer-chosen id for de-duplication.
    #[serde(default)]
    pub id: Option<String>,
}

/// Publish one message or a batch. The batch may span topics; messages of
/// one topic are stored in batch order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Publish {
    /// The messages.
    pub messages: Vec<PublishMessage>,
}

/// Where one published message was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAt {
    /// The topic.
    pub topic: String,
    /// Its offset there.
    pub offset: u64,
    /// True when this is an earlier copy found by message-id de-duplication.
    #[serde(default)]
    pub duplicate: bool,
}

/// What happened to one published message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageOutcome {
    /// Stored at one or more places (a plugin may route or split it).
    Stored(Vec<StoredAt>),
    /// A plugin dropped it: stored nowhere.
    Dropped,
    /// A plugin rejected it with this reason: stored nowhere.
    Rejected(String),
    /// A plugin (or a failing pipeline stage) sent it to the dead-letter topic.
    DeadLettered {
        /// Why.
        reason: String,
        /// Where the dead letter is.
        at: StoredAt,
    },
}

/// What the broker knows about one loaded plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginStatus {
    /// Its name in the config.
    pub name: String,
    /// The component file.
    pub path: String,
    /// First 12 hex digits of the component's SHA-256.
    pub hash: String,
    /// When this version was loaded (ms since the Unix epoch).
    pub loaded_at_ms: i64,
    /// `handle` calls.
    pub calls: u64,
    /// Messages handled.
    pub messages: u64,
    /// Calls that failed (trap, timeout, out of memory, wrong outcomes).
    pub errors: u64,
    /// Time spent in calls (µs).
    pub busy_us: u64,
    /// Median batch latency (µs, bucket upper bound).
    pub p50_us: u64,
    /// 99th percentile batch latency (µs, bucket upper bound).
    pub p99_us: u64,
    /// The last error.
    #[serde(default)]
    pub last_error: Option<String>,
    /// When it happened (ms since the Unix epoch).
    #[serde(default)]
    pub last_error_at_ms: Option<i64>,
    /// `compiled` (this version was compiled when loaded) or `cached` (its
    /// compiled form came from the cache: no compile).
    #[serde(default)]
    pub loaded_from: String,
    /// Time to load this version: compile or cache look-up, and `init` (ms).
    #[serde(default)]
    pub load_ms: u64,
    /// Versions of this plugin taken into service since the broker started.
    #[serde(default)]
    pub versions: u64,
    /// Of those, how many were compiled.
    #[serde(default)]
    pub compiles: u64,
    /// Of those, how many came from the compiled-component cache.
    #[serde(default)]
    pub cache_hits: u64,
    /// Last hot reload: file change to the new version taking traffic (ms).
    #[serde(default)]
    pub last_reload_ms: Option<u64>,
    /// The last version refused (bad file, wrong world, failed `init`),
    /// while the running one stays.
    #[serde(default)]
    pub refused: Option<RefusedVersion>,
}

/// A plugin version the broker refused to load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedVersion {
    /// First 12 hex digits of the refused file's SHA-256.
    pub hash: String,
    /// When it was refused (ms since the Unix epoch).
    pub at_ms: i64,
    /// Why.
    pub error: String,
}

/// The acknowledgement of a publish: one outcome per message, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishAck {
    /// One per published message.
    pub outcomes: Vec<MessageOutcome>,
}

/// Where a subscription or fetch starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartPosition {
    /// The oldest stored message.
    Earliest,
    /// Only messages stored from now on.
    Latest,
    /// A given offset (per topic, for a pattern).
    Offset(u64),
    /// The first message stored at or after this time (ms since the Unix epoch).
    Timestamp(i64),
}

/// Start a subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscribe {
    /// Chosen by the client, unique among its subscriptions on this connection.
    pub subscription: u64,
    /// A topic or a pattern with `*` and `>`.
    pub pattern: String,
    /// Where to start. `Latest` is a live, at-most-once subscription;
    /// anything else replays stored messages first and then follows live
    /// without gaps.
    pub from: StartPosition,
    /// A loaded plugin that filters or transforms what this subscription
    /// receives (what is stored does not change).
    #[serde(default)]
    pub plugin: Option<DeliveryPlugin>,
}

/// A plugin applied to one subscription's deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryPlugin {
    /// The name of a `[[plugin]]` loaded in the broker.
    pub name: String,
    /// A JSON config for this subscription's own instance; `None` uses the
    /// plugin's configured one.
    #[serde(default)]
    pub config: Option<String>,
}

/// Read stored messages of one topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fetch {
    /// The topic.
    pub topic: String,
    /// Where to start.
    pub from: StartPosition,
    /// At most this many messages (at least 1).
    pub max_messages: u32,
    /// Roughly at most this many payload bytes (at least one message is returned if any is stored).
    pub max_bytes: u32,
}

/// The answer to a fetch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchBatch {
    /// The messages, in offset order.
    pub messages: Vec<Delivered>,
    /// The offset to fetch from next.
    pub next_offset: u64,
    /// The topic's next offset at the time of the fetch (lag = end - next).
    pub end_offset: u64,
}

/// A stored message as delivered to a reader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivered {
    /// The topic it is stored in.
    pub topic: String,
    /// Its offset there.
    pub offset: u64,
    /// When it was stored (ms since the Unix epoch).
    pub timestamp_ms: i64,
    /// Its key.
    #[serde(default)]
    pub key: Option<Bytes>,
    /// Its headers.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub payload: Bytes,
    /// The producer's message id, if it gave one.
    #[serde(default)]
    pub id: Option<String>,
    /// For consumer-group deliveries: which delivery attempt this is (1 for
    /// the first). 0 for subscriptions and fetches.
    #[serde(default)]
    pub attempt: u32,
}

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
}

/// Settle several delivered messages of one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettleBatch {
    /// The group that delivered them.
    pub group: String,
    /// What to do with each.
    pub items: Vec<SettleItem>,
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

/// Retention limits of a topic; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionSpec {
    /// Remove segments whose newest message is older than this (ms).
    #[serde(default)]
    pub max_age_ms: Option<u64>,
    /// Remove the oldest segments while the rest is still at least this large.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Remove the oldest segments while the rest still holds at least this many messages.
    #[serde(default)]
    pub max_messages: Option<u64>,
}

/// Create a topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateTopic {
    /// The topic name.
    pub name: String,
    /// Retention; `None` takes the broker's defaults.
    #[serde(default)]
    pub retention: Option<RetentionSpec>,
    /// Segment size; `None` takes the broker's default.
    #[serde(default)]
    pub segment_bytes: Option<u64>,
    /// How long message ids are remembered for de-duplication (ms; 0 turns
    /// it off); `None` takes the broker's default.
    #[serde(default)]
    pub dedup_window_ms: Option<u64>,
}

/// What the broker knows about one topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicInfo {
    /// The name.
    pub name: String,
    /// The oldest offset still stored.
    pub start_offset: u64,
    /// The offset the next message will get.
    pub next_offset: u64,
    /// Messages stored (`next_offset - start_offset`).
    pub messages: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// Segment files.
    pub segments: u32,
    /// Time of the oldest stored message.
    pub oldest_timestamp_ms: Option<i64>,
    /// Time of the newest stored message.
    pub newest_timestamp_ms: Option<i64>,
    /// Retention in force.
    pub retention: RetentionSpec,
    /// Segment size in force.
    pub segment_bytes: u64,
    /// De-duplication window in force (ms; 0 is off).
    #[serde(default)]
    pub dedup_window_ms: u64,
}

/// Reads just the request id of a control-stream frame body, for answering
/// a request whose kind this version does not know.
pub fn request_id_of(body: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: u64,
    }
    #[derive(Deserialize)]
    enum Envelope {
        Request(IdOnly),
    }
    match rmp_serde::from_slice::<Envelope>(body) {
        Ok(Envelope::Request(r)) => Some(r.id),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{decode_one, encode};

    fn round_trip<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(v: T) {
        let bytes = encode(&v, crate::DEFAULT_MAX_FRAME_BYTES).unwrap();
        let back: T = decode_one(&bytes, crate::DEFAULT_MAX_FRAME_BYTES).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn compact_acks_round_trip_and_refuse_what_does_not_add_up() {
        let at = |topic: &str, offset, duplicate| StoredAt {
            topic: topic.into(),
            offset,
            duplicate,
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
            }])
        );
        // Building one from offsets at the end does not overflow either.
        let at = |offset| {
            MessageOutcome::Stored(vec![StoredAt {
                topic: "a".into(),
                offset,
                duplicate: false,
            }])
        };
        let ack = PublishAck {
            outcomes: vec![at(u64::MAX), at(0)],
        };
        let compact = CompactAck::from_ack(ack.clone());
        assert_eq!(compact.stored.len(), 2);
        assert_eq!(compact.into_ack(2).unwrap(), ack);
    }

    #[test]
    fn every_frame_kind_round_trips() {
        round_trip(ClientFrame::Hello(Hello {
            version: 1,
            token: Some("t".into()),
            client_name: "test".into(),
            features: vec![FEATURE_COMPACT_DELIVERY.into()],
        }));
        for body in [
            RequestBody::Ping,
            RequestBody::ListTopics,
            RequestBody::Unsubscribe { subscription: 3 },
            RequestBody::Subscribe(Subscribe {
                subscription: 1,
                pattern: "orders.>".into(),
                from: StartPosition::Timestamp(-5),
                plugin: Some(DeliveryPlugin {
                    name: "f".into(),
                    config: None,
                }),
            }),
            RequestBody::Fetch(Fetch {
                topic: "a".into(),
                from: StartPosition::Offset(10),
                max_messages: 5,
                max_bytes: 100,
            }),
            RequestBody::CreateTopic(CreateTopic {
                name: "a".into(),
                retention: Some(RetentionSpec {
                    max_age_ms: Some(1),
                    max_bytes: None,
                    max_messages: Some(3),
                }),
                segment_bytes: Some(4096),
                dedup_window_ms: Some(1000),
            }),
            RequestBody::DeleteTopic { name: "a".into() },
            RequestBody::TopicInfo { name: "a".into() },
        ] {
            round_trip(ClientFrame::Request(Request { id: 42, body }));
        }
        round_trip(ServerFrame::Response(Response {
            id: 1,
            result: Ok(ResponseBody::Published(PublishAck {
                outcomes: vec![MessageOutcome::Stored(vec![StoredAt {
                    topic: "a".into(),
                    offset: 9,
                    duplicate: false,
                }])],
            })),
        }));
        round_trip(ServerFrame::Response(Response {
            id: 2,
            result: Err(ErrorBody::new(
                crate::ErrorCode::TopicNotFound,
                "no such topic",
            )),
        }));
        round_trip(DeliveryFrame::Messages {
            messages: vec![Delivered {
                topic: "a".into(),
                offset: 1,
                timestamp_ms: 1_700_000_000_000,
                key: None,
                headers: vec![],
                payload: Bytes::from_static(b"x"),
                id: None,
                attempt: 0,
            }],
            dropped: 2,
        });
        round_trip(DeliveryFrame::End { error: None });
    }

    #[test]
    fn request_id_is_read_from_valid_frames_too() {
        let bytes = encode(
            &ClientFrame::Request(Request {
                id: 5,
                body: RequestBody::Ping,
            }),
            1024,
        )
        .unwrap();
        assert_eq!(request_id_of(&bytes[4..]), Some(5));
        assert_eq!(request_id_of(b"\xc1garbage"), None);
    }
}
