//! `sluice-client`: the async QUIC client of the sluice message broker.
//!
//! Light by design: tokio, quinn and rustls, and the pure wire types of
//! `sluice-proto`; nothing of the broker or of wasmtime.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use sluice_client::{Client, ClientOptions, Message, StartPosition, Trust};
//!
//! # async fn demo() -> Result<(), sluice_client::ClientError> {
//! let options = ClientOptions::new("127.0.0.1:4433")
//!     .trust(Trust::CaFile("sluice-data/tls/cert.pem".into()));
//! let client = Client::connect(options).await?;
//!
//! let stored = client.publish("orders.created", "order 1").await?;
//! println!("stored at offset {}", stored.offset);
//!
//! client
//!     .publish_message(Message::new("orders.created", "order 2").key("customer-7").header("region", "eu"))
//!     .await?;
//!
//! let mut orders = client.subscribe("orders.>", StartPosition::Earliest).await?;
//! while let Some(delivery) = orders.next().await {
//!     let delivery = delivery?;
//!     println!("{}@{}: {:?}", delivery.topic, delivery.offset, delivery.payload);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Failover
//!
//! `ClientOptions::new("a:4433,b:4433")` names the nodes of a cluster (or
//! one broker, `"host:port"`). When the connection is lost the client
//! reconnects, to the next address first, for up to
//! [`ClientOptions::reconnect_timeout`] (60 s by default): requests wait
//! meanwhile, publishes left unanswered go again with their message ids
//! (stored once), subscriptions resume after the last message they
//! delivered, consumers rejoin their groups. The application changes
//! nothing; what it may see is [`ClientError::Unreachable`] when no node
//! came back in time, and [`ClientError::DeliveryLost`] when it settles a
//! group delivery that came over a lost connection.
//!
//! # Layout
//!
//! - [`client`] - [`Client`], the handle an application holds: publish,
//!   subscribe, consume, administer.
//! - `link` - a client's hold on its broker across connections: requests
//!   on the current one, reconnecting, resuming subscriptions and
//!   consumers. Internal; the public types build on it.
//! - `connection` - one QUIC connection to one address: handshake,
//!   pipelined requests on the control stream, delivery streams. Internal;
//!   `link` builds on it and it on nothing above it.
//! - [`subscription`] - [`Subscription`], a `Stream` of deliveries.
//! - [`reply`] - request-reply: [`Client::request`], and [`Responder`], a
//!   `Stream` of [`IncomingRequest`]s to answer.
//! - [`consumer`] - [`Consumer`], membership of a consumer group, and [`Delivery`] to settle.
//! - [`options`] - [`ClientOptions`] (addresses, timeouts, failover) and
//!   [`Trust`] (how the broker's certificate is checked).
//! - [`message`] - [`Message`], a message to publish; `message_id` the ids
//!   given to messages published without one.
//! - [`error`] - [`ClientError`] and [`Unreachable`].
//! - [`wire`] - reading and writing frames on QUIC streams (shared with the broker).

pub mod client;
mod connection;
pub mod consumer;
pub mod error;
mod link;
pub mod message;
mod message_id;
pub mod options;
pub mod reply;
pub mod subscription;
mod tls;
pub mod transport;
pub mod wire;

pub use client::{Client, Stored};
pub use consumer::{ConsumeOptions, Consumer, Delivery};
pub use error::{ClientError, Unreachable};
pub use message::Message;
pub use options::{ClientIdentity, ClientOptions, Trust};
pub use reply::{IncomingRequest, Responder};
/// Plugin rollouts: shadow and canary versions.
pub use sluice_proto::{
    CanaryPlan, CanaryWindow, DiffSample, RolloutRequest, RolloutState, RolloutStatus, ShadowDiff,
    VersionWindow,
};
pub use sluice_proto::{
    CreateTopic, Delivered, DeliveryPlugin, ErrorBody, ErrorCode, FetchBatch, GroupInfo,
    GroupOptions, GroupTopicInfo, MemberInfo, MessageOutcome, PluginStatus, PublishAck,
    RefusedVersion, RetentionSpec, StartPosition, StoredAt, TopicInfo,
};
/// Request-reply.
pub use sluice_proto::{Reply, REPLY_HEADER};
pub use sluice_proto::{DELAY_HEADER, DELIVER_AT_HEADER, EXPIRED_HEADER, TTL_HEADER};
pub use subscription::Subscription;
pub use tls::certificate_fingerprint;
