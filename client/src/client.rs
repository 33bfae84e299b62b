//! [`Client`]: the handle an application holds to talk to a broker, and
//! [`Stored`], where a publish landed. Every request goes over the one
//! connection that all clones, subscriptions and consumers share.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_proto::{
    CompactMessage, Consume, CreateTopic, Fetch, FetchBatch, GroupInfo, MessageOutcome,
    PluginStatus, Publish, PublishAck, PublishCompact, PublishRun, RequestBody, ResponseBody,
    RetentionSpec, StartPosition, Subscribe, TopicInfo,
};

use crate::connection::Connection;
use crate::consumer::{ConsumeOptions, Consumer};
use crate::error::ClientError;
use crate::message::Message;
use crate::options::ClientOptions;
use crate::subscription::Subscription;

/// A connection to a sluice broker. Cheap to clone; every clone shares the
/// one connection. Dropping the last clone (and every subscription) closes it.
#[derive(Clone)]
pub struct Client {
    connection: Arc<Connection>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.connection.server())
            .field("remote", &self.connection.quic().remote_address())
            .finish()
    }
}

/// Where a published message was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The topic.
    pub topic: String,
    /// The offset.
    pub offset: u64,
    /// True if the broker had already stored a message with the same id.
    pub duplicate: bool,
}

impl Client {
    /// Connects, performs the handshake and starts the connection's
    /// background tasks.
    pub async fn connect(options: ClientOptions) -> Result<Client, ClientError> {
        Ok(Client {
            connection: Arc::new(Connection::open(&options).await?),
        })
    }

    /// The broker's name and version, from the handshake.
    pub fn server(&self) -> &str {
        self.connection.server()
    }

    /// The largest frame the broker accepts.
    pub fn max_frame_bytes(&self) -> u32 {
        self.connection.max_frame_bytes()
    }

    /// The underlying QUIC connection (statistics, remote address).
    pub fn connection(&self) -> &quinn::Connection {
        self.connection.quic()
    }

    /// Sends one request and waits for its response.
    async fn request(&self, body: RequestBody) -> Result<ResponseBody, ClientError> {
        self.connection.request(body).await
    }

    /// Publishes one message with just a payload.
    pub async fn publish(
        &self,
        topic: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Result<Stored, ClientError> {
        self.publish_message(Message::new(topic, payload)).await
    }

    /// Publishes one message.
    pub async fn publish_message(&self, message: Message) -> Result<Stored, ClientError> {
        let ack = self.publish_batch(vec![message]).await?;
        first_stored(ack)
    }

    /// Publishes a batch in one request; messages of one topic are stored in
    /// batch order. The ack has one outcome per message.
    pub async fn publish_batch(&self, messages: Vec<Message>) -> Result<PublishAck, ClientError> {
        let count = messages.len();
        if self.connection.compact_publish() {
            // Runs of one topic: the topic once per run, messages as arrays.
            let mut runs: Vec<PublishRun> = Vec::new();
            for m in messages {
                let m = m.into_wire();
                let message = CompactMessage(m.key, m.headers, m.payload, m.id);
                match runs.last_mut() {
                    Some(run) if run.topic == m.topic => run.messages.push(message),
                    _ => runs.push(PublishRun {
                        topic: m.topic,
                        messages: vec![message],
                    }),
                }
            }
            return match self
                .request(RequestBody::PublishCompact(PublishCompact { runs }))
                .await?
            {
                ResponseBody::PublishedCompact(ack) => {
                    ack.into_ack(count).map_err(ClientError::Protocol)
                }
                other => Err(ClientError::unexpected_response(other)),
            };
        }
        let messages: Vec<_> = messages.into_iter().map(Message::into_wire).collect();
        match self
            .request(RequestBody::Publish(Publish { messages }))
            .await?
        {
            ResponseBody::Published(ack) if ack.outcomes.len() == count => Ok(ack),
            ResponseBody::Published(ack) => Err(ClientError::Protocol(format!(
                "broker acked {} outcomes for {count} messages",
                ack.outcomes.len()
            ))),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Starts a subscription on a topic or pattern (`*` one token, `>` the
    /// rest). `StartPosition::Latest` gives live, at-most-once delivery of new
    /// messages; any other start replays stored messages first and then
    /// follows new ones without gaps.
    pub async fn subscribe(
        &self,
        pattern: impl Into<String>,
        from: StartPosition,
    ) -> Result<Subscription, ClientError> {
        self.subscribe_with(pattern, from, None).await
    }

    /// Like [`Client::subscribe`], with a plugin loaded in the broker that
    /// filters or transforms what this subscription receives (what is
    /// stored does not change).
    pub async fn subscribe_with(
        &self,
        pattern: impl Into<String>,
        from: StartPosition,
        plugin: Option<sluice_proto::DeliveryPlugin>,
    ) -> Result<Subscription, ClientError> {
        let pattern = pattern.into();
        let subscription = Subscription::register(self.connection.clone(), pattern.clone());
        // If the request fails, dropping `subscription` unregisters it.
        match self
            .request(RequestBody::Subscribe(Subscribe {
                subscription: subscription.id(),
                pattern,
                from,
                plugin,
            }))
            .await?
        {
            ResponseBody::Subscribed { .. } => Ok(subscription),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Joins consumer group `group` on `pattern` (creating the group with
    /// `options.group` if it does not exist). Each message of the group
    /// goes to one member at a time; settle each delivery.
    pub async fn consume(
        &self,
        pattern: impl Into<String>,
        group: impl Into<String>,
        options: ConsumeOptions,
    ) -> Result<Consumer, ClientError> {
        let pattern = pattern.into();
        let group: Arc<str> = group.into().into();
        let stream = Subscription::register(self.connection.clone(), pattern.clone());
        match self
            .request(RequestBody::Consume(Consume {
                consumer: stream.id(),
                group: group.to_string(),
                pattern,
                options: options.group,
                max_in_flight: options.max_in_flight,
                limit: options.limit,
                plugin: options.plugin,
            }))
            .await?
        {
            ResponseBody::Consuming { .. } => {
                Ok(Consumer::new(stream, group, self.connection.clone()))
            }
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Status of every plugin loaded in the broker.
    pub async fn list_plugins(&self) -> Result<Vec<PluginStatus>, ClientError> {
        match self.request(RequestBody::ListPlugins).await? {
            ResponseBody::Plugins(plugins) => Ok(plugins),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Lists the consumer groups.
    pub async fn list_groups(&self) -> Result<Vec<GroupInfo>, ClientError> {
        match self.request(RequestBody::ListGroups).await? {
            ResponseBody::Groups(groups) => Ok(groups),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Describes one consumer group: members, lag, pending, redeliveries.
    pub async fn group_info(&self, name: impl Into<String>) -> Result<GroupInfo, ClientError> {
        match self
            .request(RequestBody::GroupInfo { name: name.into() })
            .await?
        {
            ResponseBody::GroupInfo(info) => Ok(info),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Moves a group to `to` on every topic it reads; pending deliveries are
    /// forgotten (their acks will fail with `unknown_delivery`).
    pub async fn reset_group(
        &self,
        name: impl Into<String>,
        to: StartPosition,
    ) -> Result<GroupInfo, ClientError> {
        match self
            .request(RequestBody::ResetGroup {
                name: name.into(),
                to,
            })
            .await?
        {
            ResponseBody::GroupInfo(info) => Ok(info),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Reads up to `max_messages` stored messages of one topic.
    pub async fn fetch(
        &self,
        topic: impl Into<String>,
        from: StartPosition,
        max_messages: u32,
    ) -> Result<FetchBatch, ClientError> {
        let max_bytes = self
            .connection
            .max_frame_bytes()
            .saturating_sub(64 * 1024)
            .max(1);
        match self
            .request(RequestBody::Fetch(Fetch {
                topic: topic.into(),
                from,
                max_messages,
                max_bytes,
            }))
            .await?
        {
            ResponseBody::Fetched(batch) => Ok(batch),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Creates a topic. `None` settings take the broker's defaults.
    pub async fn create_topic(
        &self,
        name: impl Into<String>,
        retention: Option<RetentionSpec>,
        segment_bytes: Option<u64>,
    ) -> Result<TopicInfo, ClientError> {
        match self
            .request(RequestBody::CreateTopic(CreateTopic {
                name: name.into(),
                retention,
                segment_bytes,
                dedup_window_ms: None,
            }))
            .await?
        {
            ResponseBody::TopicCreated(info) => Ok(info),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Creates a topic with every setting the protocol has (retention,
    /// segment size, de-duplication window).
    pub async fn create_topic_with(&self, request: CreateTopic) -> Result<TopicInfo, ClientError> {
        match self.request(RequestBody::CreateTopic(request)).await? {
            ResponseBody::TopicCreated(info) => Ok(info),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Deletes a topic and everything stored in it.
    pub async fn delete_topic(&self, name: impl Into<String>) -> Result<(), ClientError> {
        match self
            .request(RequestBody::DeleteTopic { name: name.into() })
            .await?
        {
            ResponseBody::TopicDeleted => Ok(()),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Lists all topics.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, ClientError> {
        match self.request(RequestBody::ListTopics).await? {
            ResponseBody::Topics(topics) => Ok(topics),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Describes one topic.
    pub async fn topic_info(&self, name: impl Into<String>) -> Result<TopicInfo, ClientError> {
        match self
            .request(RequestBody::TopicInfo { name: name.into() })
            .await?
        {
            ResponseBody::TopicInfo(info) => Ok(info),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Round trip to the broker.
    pub async fn ping(&self) -> Result<Duration, ClientError> {
        let start = std::time::Instant::now();
        match self.request(RequestBody::Ping).await? {
            ResponseBody::Pong => Ok(start.elapsed()),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Closes the connection and waits (briefly) for the close to reach the
    /// broker.
    pub async fn close(&self) {
        self.connection.close().await;
    }
}

fn first_stored(ack: PublishAck) -> Result<Stored, ClientError> {
    match ack.outcomes.into_iter().next() {
        Some(
            other @ (MessageOutcome::Dropped
            | MessageOutcome::Rejected(_)
            | MessageOutcome::DeadLettered { .. }),
        ) => Err(ClientError::NotStored(other)),
        Some(MessageOutcome::Stored(places)) => match places.into_iter().next() {
            Some(at) => Ok(Stored {
                topic: at.topic,
                offset: at.offset,
                duplicate: at.duplicate,
            }),
            None => Err(ClientError::Protocol("publish ack names no place".into())),
        },
        None => Err(ClientError::Protocol("publish ack has no outcome".into())),
    }
}
