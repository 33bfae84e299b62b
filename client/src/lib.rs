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
//! # Layout
//!
//! - [`client`] - [`Client`], the handle an application holds: publish,
//!   subscribe, consume, administer.
//! - `connection` - the QUIC connection a client and its subscriptions
//!   share: handshake, pipelined requests on the control stream, delivery
//!   streams. Internal; everything else builds on it and it on nothing
//!   above it.
//! - [`subscription`] - [`Subscription`], a `Stream` of deliveries.
//! - [`consumer`] - [`Consumer`], membership of a consumer group, and [`Delivery`] to settle.
//! - [`options`] - [`ClientOptions`] and [`Trust`] (how the broker's certificate is checked).
//! - [`message`] - [`Message`], a message to publish.
//! - [`error`] - [`ClientError`].
//! - [`wire`] - reading and writing frames on QUIC streams (shared with the broker).

pub mod client;
mod connection;
pub mod consumer;
pub mod error;
pub mod message;
pub mod options;
pub mod subscription;
mod tls;
pub mod transport;
pub mod wire;

pub use client::{Client, Stored};
pub use consumer::{ConsumeOptions, Consumer, Delivery};
pub use error::ClientError;
pub use message::Message;
pub use options::{ClientIdentity, ClientOptions, Trust};
pub use sluice_proto::{
    CreateTopic, Delivered, DeliveryPlugin, ErrorBody, ErrorCode, FetchBatch, GroupInfo,
    GroupOptions, GroupTopicInfo, MemberInfo, MessageOutcome, PluginStatus, PublishAck,
    RefusedVersion, RetentionSpec, StartPosition, StoredAt, TopicInfo,
};
pub use subscription::Subscription;
pub use tls::certificate_fingerprint;
