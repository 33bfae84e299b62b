//! The control stream's requests and responses: every operation a client
//! can ask for, and every successful answer. A [`Request`] carries an id
//! that its [`Response`] carries back.

use serde::{Deserialize, Serialize};

use super::compact::{CompactAck, PublishCompact};
use super::delivery::{Fetch, FetchBatch, StartPosition, Subscribe};
use super::group::{Consume, GroupInfo, Settle, SettleBatch};
use super::plugin::PluginStatus;
use super::publish::{Publish, PublishAck};
use super::reply::{Ask, Reply, ReplyTo, Respond};
use super::rollout::{RolloutRequest, RolloutStatus};
use super::topic::{CreateTopic, TopicInfo};
use super::trace::{TraceKey, TraceReport};
use crate::error::ErrorBody;

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
    /// Status of every loaded plugin (of every node, in cluster mode).
    ListPlugins,
    /// Replace the component of a configured plugin: on one machine its
    /// file, in a cluster on every node. Answered with `Deployed`.
    DeployPlugin {
        /// The plugin's name (a `[[plugin]]` of the broker or cluster).
        name: String,
        /// The component.
        wasm: bytes::Bytes,
    },
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
    /// whose `Welcome` lists [`FEATURE_COMPACT_PUBLISH`](crate::FEATURE_COMPACT_PUBLISH).
    PublishCompact(PublishCompact),
    /// What happened to a message: its stages, places, deliveries and
    /// settlements, from the broker's event record. Answered with `Traced`.
    Trace(TraceKey),
    /// Start, finish or look at a plugin's shadow or canary rollout.
    /// Answered with `Rollout`.
    Rollout(RolloutRequest),
    /// Answer requests on a pattern; they come on a new unidirectional
    /// stream. Answered with `Responding`; ended with `Unsubscribe`.
    Respond(Respond),
    /// Send a request and wait for its first reply (not stored). Answered
    /// with `Answered`.
    Ask(Ask),
    /// Answer a request. Answered with `ReplySent`.
    Reply(ReplyTo),
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
    /// A plugin's new component was stored.
    Deployed {
        /// Its version (first 12 hex digits of its SHA-256).
        hash: String,
    },
    /// The acknowledgement of a `PublishCompact`.
    PublishedCompact(CompactAck),
    /// The results of a settle batch, in order: `None` settled, or why not.
    SettledBatch {
        /// One per item.
        errors: Vec<Option<ErrorBody>>,
    },
    /// The answer to `Trace`.
    Traced(TraceReport),
    /// The answer to `Rollout`: the rollout as it stands after the request.
    Rollout(Box<RolloutStatus>),
    /// The responder is active.
    Responding {
        /// The responder id.
        responder: u64,
    },
    /// The first reply to an `Ask`.
    Answered(Reply),
    /// The reply went to the requester.
    ReplySent,
}
