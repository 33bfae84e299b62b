//! [`Client`]: the handle an application holds to talk to a broker, and
//! [`Stored`], where a publish landed. Every request goes over the one
//! connection that all clones, subscriptions and consumers share; when it
//! is lost, the client fails over to a new one (see [`ClientOptions`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_proto::{
    CompactMessage, Consume, CreateTopic, Fetch, FetchBatch, GroupInfo, MessageOutcome,
    PluginStatus, Publish, PublishAck, PublishCompact, PublishRun, RequestBody, ResponseBody,
    RetentionSpec, RolloutRequest, RolloutStatus, StartPosition, Subscribe, TopicInfo,
};

use crate::consumer::{ConsumeOptions, Consumer};
use crate::error::ClientError;
use crate::link::{Link, Opening};
use crate::message::Message;
use crate::options::ClientOptions;
use crate::subscription::Subscription;

/// A connection to a sluice broker, or to one node of a cluster at a time.
/// Cheap to clone; every clone shares the one connection. Dropping the last
/// clone (and every subscription and consumer) closes it.
///
/// A lost connection is replaced without the application's help: requests
/// wait while the client reconnects, publishes are sent again (stored once
/// thanks to their ids), subscriptions resume and consumers rejoin. See
/// [`ClientOptions`] for the addresses and timeouts.
#[derive(Clone)]
pub struct Client {
    pub(crate) link: Arc<Link>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let connection = self.link.current();
        f.debug_struct("Client")
            .field("server", &connection.server())
            .field("address", &connection.address())
            .field("remote", &connection.quic().remote_address())
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
    /// When the message is due, if it was delayed (ms since the Unix
    /// epoch): it waits in the broker's schedule and `offset` is its place
    /// there; it takes its offset in `topic` when due.
    pub deliver_at_ms: Option<i64>,
    /// Every place it was stored, in order: one, unless a routing plugin
    /// stored it in several (`topic` and `offset` are the first).
    pub routed: Vec<sluice_proto::StoredAt>,
}

impl Stored {
    /// Where one message's outcome says it was stored, or why it was not
    /// ([`ClientError::NotStored`]).
    pub fn from_outcome(outcome: MessageOutcome) -> Result<Stored, ClientError> {
        match outcome {
            MessageOutcome::Stored(routed) => {
                let first = routed
                    .first()
                    .ok_or_else(|| ClientError::Protocol("publish ack names no place".into()))?;
                Ok(Stored {
                    topic: first.topic.clone(),
                    offset: first.offset,
                    duplicate: first.duplicate,
                    deliver_at_ms: first.deliver_at_ms,
                    routed,
                })
            }
            other => Err(ClientError::NotStored(other)),
        }
    }
}

impl Client {
    /// Connects to the first address of `options.server` that answers,
    /// performs the handshake and starts the connection's background
    /// tasks, among them the one that reconnects when the connection is
    /// lost.
    pub async fn connect(options: ClientOptions) -> Result<Client, ClientError> {
        Ok(Client {
            link: Link::connect(options).await?,
        })
    }

    /// The broker's name and version, from the handshake of the current
    /// connection.
    pub fn server(&self) -> String {
        self.link.current().server().to_owned()
    }

    /// The address (one of `ClientOptions::server`) of the current
    /// connection.
    pub fn address(&self) -> String {
        self.link.current().address().to_owned()
    }

    /// The largest frame the broker accepts.
    pub fn max_frame_bytes(&self) -> u32 {
        self.link.current().max_frame_bytes()
    }

    /// The current QUIC connection (statistics, remote address); after a
    /// failover, a new one. Closing it closes the client.
    pub fn connection(&self) -> quinn::Connection {
        self.link.current().quic().clone()
    }

    /// Sends one request and waits for its response.
    async fn call(&self, body: RequestBody) -> Result<ResponseBody, ClientError> {
        self.link.request(body).await
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
    ///
    /// Every message goes with an id, a new random one where none was set
    /// ([`Message::id`]): when the connection is lost before the ack, the
    /// batch is sent again on the next connection and the broker stores
    /// each message once (an outcome may then say `duplicate`: the first
    /// attempt had stored it).
    pub async fn publish_batch(&self, messages: Vec<Message>) -> Result<PublishAck, ClientError> {
        let count = messages.len();
        let messages = messages.into_iter().map(|m| {
            let mut m = m.into_wire();
            m.id.get_or_insert_with(crate::message_id::new_id);
            m
        });
        if self.link.current().compact_publish() {
            // Runs of one topic: the topic once per run, messages as arrays.
            let mut runs: Vec<PublishRun> = Vec::new();
            for m in messages {
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
                .call(RequestBody::PublishCompact(PublishCompact { runs }))
                .await?
            {
                ResponseBody::PublishedCompact(ack) => {
                    ack.into_ack(count).map_err(ClientError::Protocol)
                }
                other => Err(ClientError::unexpected_response(other)),
            };
        }
        let messages: Vec<_> = messages.collect();
        match self
            .call(RequestBody::Publish(Publish { messages }))
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
    /// follows new ones without gaps. Over a failover the subscription
    /// resumes after the last message it delivered, for each topic.
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
        let stream = self
            .link
            .open_stream(|id| {
                Opening::Subscribe(Subscribe {
                    subscription: id,
                    pattern: pattern.clone(),
                    from,
                    plugin,
                    resume: Default::default(),
                })
            })
            .await?;
        Ok(Subscription::new(stream, pattern))
    }

    /// Joins consumer group `group` on `pattern` (creating the group with
    /// `options.group` if it does not exist). Each message of the group
    /// goes to one member at a time; settle each delivery. Over a failover
    /// the consumer rejoins with the same options.
    pub async fn consume(
        &self,
        pattern: impl Into<String>,
        group: impl Into<String>,
        options: ConsumeOptions,
    ) -> Result<Consumer, ClientError> {
        let group: Arc<str> = group.into().into();
        let stream = self
            .link
            .open_stream(|id| {
                Opening::Consume(Consume {
                    consumer: id,
                    group: group.to_string(),
                    pattern: pattern.into(),
                    options: options.group,
                    max_in_flight: options.max_in_flight,
                    limit: options.limit,
                    plugin: options.plugin,
                })
            })
            .await?;
        Ok(Consumer::new(stream, group))
    }

    /// Status of every plugin loaded in the broker.
    pub async fn list_plugins(&self) -> Result<Vec<PluginStatus>, ClientError> {
        match self.call(RequestBody::ListPlugins).await? {
            ResponseBody::Plugins(plugins) => Ok(plugins),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Replaces configured plugin `name`'s component with `wasm` in the
    /// broker (on every node of a cluster); the new version's hash. The
    /// broker checks it first (it must compile and `init`).
    pub async fn deploy_plugin(
        &self,
        name: impl Into<String>,
        wasm: impl Into<Bytes>,
    ) -> Result<String, ClientError> {
        let body = RequestBody::DeployPlugin {
            name: name.into(),
            wasm: wasm.into(),
        };
        match self.call(body).await? {
            ResponseBody::Deployed { hash } => Ok(hash),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Starts, finishes or reads a plugin's shadow or canary rollout (needs
    /// the admin `plugins` right); the rollout as it stands after.
    pub async fn plugin_rollout(
        &self,
        request: RolloutRequest,
    ) -> Result<RolloutStatus, ClientError> {
        match self.call(RequestBody::Rollout(request)).await? {
            ResponseBody::Rollout(status) => Ok(*status),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Lists the consumer groups.
    pub async fn list_groups(&self) -> Result<Vec<GroupInfo>, ClientError> {
        match self.call(RequestBody::ListGroups).await? {
            ResponseBody::Groups(groups) => Ok(groups),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// What happened to the messages `key` names (their stages, places,
    /// deliveries, acks and dead letters), from the broker's event record;
    /// only messages of topics this principal may read are reported.
    pub async fn trace(
        &self,
        key: sluice_proto::TraceKey,
    ) -> Result<sluice_proto::TraceReport, ClientError> {
        match self.call(RequestBody::Trace(key)).await? {
            ResponseBody::Traced(report) => Ok(report),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Describes one consumer group: members, lag, pending, redeliveries.
    pub async fn group_info(&self, name: impl Into<String>) -> Result<GroupInfo, ClientError> {
        match self
            .call(RequestBody::GroupInfo { name: name.into() })
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
            .call(RequestBody::ResetGroup {
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
        let max_bytes = self.max_frame_bytes().saturating_sub(64 * 1024).max(1);
        match self
            .call(RequestBody::Fetch(Fetch {
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
            .call(RequestBody::CreateTopic(CreateTopic {
                name: name.into(),
                retention,
                segment_bytes,
                dedup_window_ms: None,
                default_ttl_ms: None,
                dead_letter_expired: None,
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
        match self.call(RequestBody::CreateTopic(request)).await? {
            ResponseBody::TopicCreated(info) => Ok(info),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Deletes a topic and everything stored in it.
    pub async fn delete_topic(&self, name: impl Into<String>) -> Result<(), ClientError> {
        match self
            .call(RequestBody::DeleteTopic { name: name.into() })
            .await?
        {
            ResponseBody::TopicDeleted => Ok(()),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Lists all topics.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, ClientError> {
        match self.call(RequestBody::ListTopics).await? {
            ResponseBody::Topics(topics) => Ok(topics),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Describes one topic.
    pub async fn topic_info(&self, name: impl Into<String>) -> Result<TopicInfo, ClientError> {
        match self
            .call(RequestBody::TopicInfo { name: name.into() })
            .await?
        {
            ResponseBody::TopicInfo(info) => Ok(info),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Round trip to the broker.
    pub async fn ping(&self) -> Result<Duration, ClientError> {
        let start = std::time::Instant::now();
        match self.call(RequestBody::Ping).await? {
            ResponseBody::Pong => Ok(start.elapsed()),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Closes the connection and waits (briefly) for the close to reach the
    /// broker. The client does not reconnect after this; what waits for it
    /// fails with [`ClientError::Closed`].
    pub async fn close(&self) {
        self.link.close().await;
    }
}

fn first_stored(ack: PublishAck) -> Result<Stored, ClientError> {
    let outcome = (ack.outcomes.into_iter().next())
        .ok_or_else(|| ClientError::Protocol("publish ack has no outcome".into()))?;
    Stored::from_outcome(outcome)
}
