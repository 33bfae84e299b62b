//! The frames of protocol version 1: what flows on the wire.
//!
//! Compatibility rules: frames are MessagePack maps keyed by field name, so
//! a field added with `#[serde(default)]` is readable by older peers and a
//! missing one by newer peers. Enum variants are named on the wire.
//!
//! # Layout
//!
//! Dependencies point down this list: a file uses only those below it.
//!
//! - `stream` - the frames of each stream: [`ClientFrame`], [`ServerFrame`],
//!   [`DeliveryFrame`], and [`request_id_of`] for requests of unknown kind.
//! - `request` - [`Request`] and [`Response`] on the control stream, with
//!   every operation and answer.
//! - `handshake` - [`Hello`], [`Welcome`] and the optional features.
//! - `compact` - the compact layouts of publishes, acknowledgements and
//!   deliveries, and their conversions to and from the plain ones.
//! - `publish` - [`Publish`] and its acknowledgement, [`PublishAck`].
//! - `group` - consumer groups: [`Consume`], [`Settle`], [`GroupInfo`].
//! - `delivery` - reading: [`Subscribe`], [`Fetch`], [`Delivered`].
//! - `topic` - topic administration: [`CreateTopic`], [`TopicInfo`].
//! - `plugin` - what the broker reports about plugins: [`PluginStatus`].
//! - `rollout` - shadow and canary versions: [`RolloutRequest`],
//!   [`RolloutStatus`].
//! - `reply` - request-reply: [`Respond`], [`Ask`], [`Reply`], [`ReplyTo`].
//! - `schedule` - the headers of delayed delivery and time-to-live.
//! - `trace` - what happened to one message: [`TraceKey`], [`TraceReport`].
//!
//! Every type is re-exported here and at the crate root, so the files are
//! a way to read the protocol, not part of its paths.

mod compact;
mod delivery;
mod group;
mod handshake;
mod plugin;
mod publish;
mod reply;
mod request;
mod rollout;
mod schedule;
mod stream;
mod topic;
mod trace;

pub use compact::{
    CompactAck, CompactDelivered, CompactMessage, DeliveryRun, PublishCompact, PublishRun,
    StoredRange,
};
pub use delivery::{Delivered, DeliveryPlugin, Fetch, FetchBatch, StartPosition, Subscribe};
pub use group::{
    Consume, GroupInfo, GroupOptions, GroupTopicInfo, MemberInfo, Settle, SettleAction,
    SettleBatch, SettleItem,
};
pub use handshake::{Hello, Welcome, FEATURE_COMPACT_DELIVERY, FEATURE_COMPACT_PUBLISH};
pub use plugin::{PluginStatus, RefusedVersion};
pub use publish::{MessageOutcome, Publish, PublishAck, PublishMessage, StoredAt};
pub use reply::{Ask, Reply, ReplyTo, Respond, REPLY_HEADER};
pub use request::{Request, RequestBody, Response, ResponseBody};
pub use rollout::{
    CanaryPlan, CanaryWindow, DiffSample, RolloutRequest, RolloutState, RolloutStatus, ShadowDiff,
    VersionWindow,
};
pub use schedule::{DELAY_HEADER, DELIVER_AT_HEADER, EXPIRED_HEADER, TTL_HEADER};
pub use stream::{request_id_of, ClientFrame, DeliveryFrame, ServerFrame};
pub use topic::{CreateTopic, RetentionSpec, TopicInfo};
pub use trace::{
    DeadLetterTrace, DeliveryTrace, MessageTrace, PlaceTrace, SettleTrace, StageTrace, TraceKey,
    TraceReport,
};
