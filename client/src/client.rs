//! [`Client`]: one QUIC connection to a broker. Requests are pipelined on
//! the control stream (any number in flight, answered by id, in any order);
//! each subscription's deliveries come on a unidirectional stream of its own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sluice_proto::{
    frame, ClientFrame, CompactMessage, Consume, CreateTopic, DeliveryFrame, ErrorBody, Fetch,
    FetchBatch, GroupInfo, Hello, MessageOutcome, PluginStatus, Publish, PublishAck,
    PublishCompact, PublishRun, Request, RequestBody, ResponseBody, RetentionSpec, ServerFrame,
    StartPosition, Subscribe, TopicInfo, PROTOCOL_VERSION,
};
use tokio::sync::{mpsc, oneshot};

use crate::consumer::{ConsumeOptions, Consumer};
use crate::error::ClientError;
use crate::message::Message;
use crate::options::ClientOptions;
use crate::subscription::{Subscription, SubscriptionEvent};
use crate::tls;
use crate::wire::FrameReader;

/// Frames queued for the control stream before `request` waits: enough to
/// keep a pipelining producer busy, small enough to bound memory.
const WRITE_QUEUE_FRAMES: usize = 1024;
/// Delivery frames buffered per subscription before the client stops
/// reading its stream (QUIC flow control then slows the broker's sender).
const SUBSCRIPTION_QUEUE_FRAMES: usize = 64;

type Pending = HashMap<u64, oneshot::Sender<Result<ResponseBody, ClientError>>>;

/// State shared with the connection's background tasks.
pub(crate) struct Shared {
    /// Requests waiting for their response; `None` once the connection is gone.
    pending: Mutex<Option<Pending>>,
    /// Open subscriptions by id.
    pub(crate) subscriptions: Mutex<HashMap<u64, mpsc::Sender<SubscriptionEvent>>>,
    /// Why the broker ended the session, if it said.
    failure: Mutex<Option<ErrorBody>>,
}

pub(crate) struct Inner {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    writer: mpsc::Sender<Bytes>,
    pub(crate) shared: Arc<Shared>,
    next_request: AtomicU64,
    next_subscription: AtomicU64,
    max_frame_bytes: u32,
    server: String,
    /// The broker takes compact publishes.
    compact_publish: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.conn.close(0u32.into(), b"client dropped");
    }
}

/// A connection to a sluice broker. Cheap to clone; every clone shares the
/// one connection. Dropping the last clone (and every subscription) closes it.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.inner.server)
            .field("remote", &self.inner.conn.remote_address())
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the maps in a
    // state worse than the panic itself; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn host_of(server: &str) -> String {
    let host = match server.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => server,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

async fn resolve(server: &str) -> Result<SocketAddr, ClientError> {
    let mut addrs = tokio::net::lookup_host(server).await.map_err(|e| {
        ClientError::Config(format!(
            "cannot resolve {server:?} (expected host:port): {e}"
        ))
    })?;
    addrs
        .next()
        .ok_or_else(|| ClientError::Config(format!("{server:?} resolves to no address")))
}

impl Client {
    /// Connects, performs the handshake and starts the connection's
    /// background tasks.
    pub async fn connect(options: ClientOptions) -> Result<Client, ClientError> {
        let trust = options.trust.as_ref().ok_or_else(|| {
            ClientError::Config(
                "no way to check the broker's certificate: give a CA file, the broker's data directory, or choose insecure"
                    .into(),
            )
        })?;
        let addr = resolve(&options.server).await?;
        let server_name = options
            .server_name
            .clone()
            .unwrap_or_else(|| host_of(&options.server));
        tls::server_name(&server_name)?;
        let tls_config = tls::client_config(trust, options.identity.as_ref())?;
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls_config)
            .map_err(|e| ClientError::Config(format!("TLS set-up failed: {e}")))?;
        let mut config = quinn::ClientConfig::new(Arc::new(quic));
        let mut transport = crate::transport::transport_config();
        transport
            .keep_alive_interval(Some(Duration::from_secs(5)))
            .max_concurrent_uni_streams(4096u32.into())
            .max_concurrent_bidi_streams(0u32.into());
        config.transport_config(Arc::new(transport));

        let bind: SocketAddr = if addr.is_ipv6() {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let connect_error = |e: Box<dyn std::error::Error + Send + Sync>| ClientError::Connect {
            addr: options.server.clone(),
            source: e,
        };
        let mut endpoint =
            crate::transport::endpoint(bind, None).map_err(|e| connect_error(e.into()))?;
        endpoint.set_default_client_config(config);
        let connecting = endpoint
            .connect(addr, &server_name)
            .map_err(|e| connect_error(e.into()))?;
        let conn = tokio::time::timeout(options.connect_timeout, connecting)
            .await
            .map_err(|_| ClientError::Timeout(options.connect_timeout))?
            .map_err(|e| connect_error(e.into()))?;

        let (mut send, recv) = conn.open_bi().await?;
        let hello = frame::encode(
            &ClientFrame::Hello(Hello {
                version: PROTOCOL_VERSION,
                token: options.token.clone(),
                client_name: options.client_name.clone(),
                features: vec![
                    sluice_proto::FEATURE_COMPACT_DELIVERY.into(),
                    sluice_proto::FEATURE_COMPACT_PUBLISH.into(),
                ],
            }),
            sluice_proto::DEFAULT_MAX_FRAME_BYTES,
        )?;
        send.write_all(&hello).await?;
        let mut reader = FrameReader::new(recv, options.max_frame_bytes);
        let welcome =
            tokio::time::timeout(options.connect_timeout, reader.next_frame::<ServerFrame>())
                .await
                .map_err(|_| ClientError::Timeout(options.connect_timeout))??;
        let welcome = match welcome {
            Some(ServerFrame::Welcome(w)) => w,
            Some(ServerFrame::Error(e)) => return Err(ClientError::Server(e)),
            Some(other) => {
                return Err(ClientError::Protocol(format!(
                    "expected Welcome, got {other:?}"
                )))
            }
            None => {
                return Err(ClientError::Protocol(
                    "the broker closed the control stream".into(),
                ))
            }
        };
        if welcome.version != PROTOCOL_VERSION {
            return Err(ClientError::Protocol(format!(
                "broker speaks protocol version {}, this client {}",
                welcome.version, PROTOCOL_VERSION
            )));
        }

        let shared = Arc::new(Shared {
            pending: Mutex::new(Some(HashMap::new())),
            subscriptions: Mutex::new(HashMap::new()),
            failure: Mutex::new(None),
        });
        let (writer, queue) = mpsc::channel(WRITE_QUEUE_FRAMES);
        tokio::spawn(write_control(send, queue));
        tokio::spawn(read_control(reader, shared.clone(), conn.clone()));
        tokio::spawn(accept_deliveries(
            conn.clone(),
            shared.clone(),
            options.max_frame_bytes,
        ));

        Ok(Client {
            inner: Arc::new(Inner {
                endpoint,
                conn,
                writer,
                shared,
                next_request: AtomicU64::new(1),
                next_subscription: AtomicU64::new(1),
                max_frame_bytes: welcome.max_frame_bytes,
                compact_publish: welcome
                    .features
                    .iter()
                    .any(|f| f == sluice_proto::FEATURE_COMPACT_PUBLISH),
                server: welcome.server,
            }),
        })
    }

    /// The broker's name and version, from the handshake.
    pub fn server(&self) -> &str {
        &self.inner.server
    }

    /// The largest frame the broker accepts.
    pub fn max_frame_bytes(&self) -> u32 {
        self.inner.max_frame_bytes
    }

    /// The underlying QUIC connection (statistics, remote address).
    pub fn connection(&self) -> &quinn::Connection {
        &self.inner.conn
    }

    /// Sends one request and waits for its response.
    pub(crate) async fn request(&self, body: RequestBody) -> Result<ResponseBody, ClientError> {
        self.inner.request(body).await
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
        if self.inner.compact_publish {
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
                other => Err(unexpected(other)),
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
            other => Err(unexpected(other)),
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
        let id = self.inner.next_subscription.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_QUEUE_FRAMES);
        lock(&self.inner.shared.subscriptions).insert(id, tx);
        let subscription = Subscription::new(id, pattern.clone(), rx, self.inner.clone());
        // If the request fails, dropping `subscription` unregisters it.
        match self
            .request(RequestBody::Subscribe(Subscribe {
                subscription: id,
                pattern,
                from,
                plugin,
            }))
            .await?
        {
            ResponseBody::Subscribed { .. } => Ok(subscription),
            other => Err(unexpected(other)),
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
        let id = self.inner.next_subscription.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_QUEUE_FRAMES);
        lock(&self.inner.shared.subscriptions).insert(id, tx);
        let stream = Subscription::new(id, pattern.clone(), rx, self.inner.clone());
        match self
            .request(RequestBody::Consume(Consume {
                consumer: id,
                group: group.to_string(),
                pattern,
                options: options.group,
                max_in_flight: options.max_in_flight,
                limit: options.limit,
                plugin: options.plugin,
            }))
            .await?
        {
            ResponseBody::Consuming { .. } => Ok(Consumer::new(stream, group, self.clone())),
            other => Err(unexpected(other)),
        }
    }

    /// Status of every plugin loaded in the broker.
    pub async fn list_plugins(&self) -> Result<Vec<PluginStatus>, ClientError> {
        match self.request(RequestBody::ListPlugins).await? {
            ResponseBody::Plugins(plugins) => Ok(plugins),
            other => Err(unexpected(other)),
        }
    }

    /// Lists the consumer groups.
    pub async fn list_groups(&self) -> Result<Vec<GroupInfo>, ClientError> {
        match self.request(RequestBody::ListGroups).await? {
            ResponseBody::Groups(groups) => Ok(groups),
            other => Err(unexpected(other)),
        }
    }

    /// Describes one consumer group: members, lag, pending, redeliveries.
    pub async fn group_info(&self, name: impl Into<String>) -> Result<GroupInfo, ClientError> {
        match self
            .request(RequestBody::GroupInfo { name: name.into() })
            .await?
        {
            ResponseBody::GroupInfo(info) => Ok(info),
            other => Err(unexpected(other)),
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
            other => Err(unexpected(other)),
        }
    }

    /// Reads up to `max_messages` stored messages of one topic.
    pub async fn fetch(
        &self,
        topic: impl Into<String>,
        from: StartPosition,
        max_messages: u32,
    ) -> Result<FetchBatch, ClientError> {
        let max_bytes = self.inner.max_frame_bytes.saturating_sub(64 * 1024).max(1);
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
            other => Err(unexpected(other)),
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
            other => Err(unexpected(other)),
        }
    }

    /// Creates a topic with every setting the protocol has (retention,
    /// segment size, de-duplication window).
    pub async fn create_topic_with(&self, request: CreateTopic) -> Result<TopicInfo, ClientError> {
        match self.request(RequestBody::CreateTopic(request)).await? {
            ResponseBody::TopicCreated(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes a topic and everything stored in it.
    pub async fn delete_topic(&self, name: impl Into<String>) -> Result<(), ClientError> {
        match self
            .request(RequestBody::DeleteTopic { name: name.into() })
            .await?
        {
            ResponseBody::TopicDeleted => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Lists all topics.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, ClientError> {
        match self.request(RequestBody::ListTopics).await? {
            ResponseBody::Topics(topics) => Ok(topics),
            other => Err(unexpected(other)),
        }
    }

    /// Describes one topic.
    pub async fn topic_info(&self, name: impl Into<String>) -> Result<TopicInfo, ClientError> {
        match self
            .request(RequestBody::TopicInfo { name: name.into() })
            .await?
        {
            ResponseBody::TopicInfo(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    /// Round trip to the broker.
    pub async fn ping(&self) -> Result<Duration, ClientError> {
        let start = std::time::Instant::now();
        match self.request(RequestBody::Ping).await? {
            ResponseBody::Pong => Ok(start.elapsed()),
            other => Err(unexpected(other)),
        }
    }

    /// Closes the connection and waits (briefly) for the close to reach the
    /// broker.
    pub async fn close(&self) {
        self.inner.conn.close(0u32.into(), b"client closed");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.inner.endpoint.wait_idle()).await;
    }
}

impl Inner {
    pub(crate) async fn request(&self, body: RequestBody) -> Result<ResponseBody, ClientError> {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let frame = frame::encode(
            &ClientFrame::Request(Request { id, body }),
            self.max_frame_bytes,
        )?;
        let (tx, rx) = oneshot::channel();
        match lock(&self.shared.pending).as_mut() {
            Some(pending) => pending.insert(id, tx),
            None => return Err(self.closed_error()),
        };
        if self.writer.send(frame).await.is_err() {
            if let Some(pending) = lock(&self.shared.pending).as_mut() {
                pending.remove(&id);
            }
            return Err(self.closed_error());
        }
        rx.await.map_err(|_| self.closed_error())?
    }

    /// Queues a request whose answer nobody waits for (unsubscribe on drop).
    pub(crate) fn request_detached(&self, body: RequestBody) {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        if let Ok(frame) = frame::encode(
            &ClientFrame::Request(Request { id, body }),
            self.max_frame_bytes,
        ) {
            let _ = self.writer.try_send(frame);
        }
    }

    fn closed_error(&self) -> ClientError {
        if let Some(failure) = lock(&self.shared.failure).clone() {
            return ClientError::Server(failure);
        }
        match self.conn.close_reason() {
            Some(reason) => reason.into(),
            None => ClientError::Closed,
        }
    }
}

fn unexpected(body: ResponseBody) -> ClientError {
    ClientError::Protocol(format!("unexpected response {body:?}"))
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

/// Writes queued frames, coalescing whatever is queued into one write.
async fn write_control(mut send: quinn::SendStream, mut queue: mpsc::Receiver<Bytes>) {
    let mut batch = Vec::with_capacity(64);
    while queue.recv_many(&mut batch, 64).await > 0 {
        if send.write_all_chunks(&mut batch).await.is_err() {
            return;
        }
        batch.clear();
    }
    let _ = send.finish();
}

/// Routes responses to their waiting requests until the stream ends, then
/// fails whatever is still waiting.
async fn read_control(
    mut reader: FrameReader,
    shared: Arc<Shared>,
    reader_conn: quinn::Connection,
) {
    let failure: Option<ErrorBody> = loop {
        match reader.next_frame::<ServerFrame>().await {
            Ok(Some(ServerFrame::Response(response))) => {
                let waiter = lock(&shared.pending)
                    .as_mut()
                    .and_then(|p| p.remove(&response.id));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(response.result.map_err(ClientError::Server));
                }
            }
            Ok(Some(ServerFrame::Error(error))) => break Some(error),
            Ok(Some(ServerFrame::Welcome(_))) => {
                tracing::warn!("broker sent a second Welcome; closing");
                break None;
            }
            Ok(None) => break None,
            Err(e) => {
                tracing::debug!(error = %e, "control stream ended");
                break None;
            }
        }
    };
    if let Some(failure) = &failure {
        *lock(&shared.failure) = Some(failure.clone());
    }
    let pending = lock(&shared.pending).take().unwrap_or_default();
    for (_, waiter) in pending {
        let error = match &failure {
            Some(body) => ClientError::Server(body.clone()),
            None => match reader_conn.close_reason() {
                Some(reason) => reason.into(),
                None => ClientError::Closed,
            },
        };
        let _ = waiter.send(Err(error));
    }
}

/// Accepts the broker's delivery streams and hands each to its subscription.
async fn accept_deliveries(conn: quinn::Connection, shared: Arc<Shared>, max_frame_bytes: u32) {
    while let Ok(stream) = conn.accept_uni().await {
        tokio::spawn(read_deliveries(
            FrameReader::new(stream, max_frame_bytes),
            shared.clone(),
        ));
    }
    // Connection gone: dropping the senders ends every subscription stream.
    lock(&shared.subscriptions).clear();
}

async fn read_deliveries(mut reader: FrameReader, shared: Arc<Shared>) {
    let id = match reader.next_frame::<DeliveryFrame>().await {
        Ok(Some(DeliveryFrame::Start { subscription })) => subscription,
        _ => {
            let _ = reader.stream_mut().stop(0u32.into());
            return;
        }
    };
    let Some(tx) = lock(&shared.subscriptions).get(&id).cloned() else {
        let _ = reader.stream_mut().stop(0u32.into());
        return;
    };
    loop {
        let event = match reader.next_frame::<DeliveryFrame>().await {
            Ok(Some(DeliveryFrame::Messages { messages, dropped })) => {
                SubscriptionEvent::Messages { messages, dropped }
            }
            Ok(Some(DeliveryFrame::Compact { runs, dropped })) => SubscriptionEvent::Messages {
                messages: runs.into_iter().flat_map(|r| r.into_delivered()).collect(),
                dropped,
            },
            Ok(Some(DeliveryFrame::End { error })) => SubscriptionEvent::End(error),
            Ok(Some(DeliveryFrame::Start { .. })) => {
                SubscriptionEvent::Failed("delivery stream started twice".into())
            }
            Ok(None) => SubscriptionEvent::End(None),
            // The broker resets a stream it cannot finish (shutdown while
            // this client was not reading): its code says why.
            Err(crate::wire::WireError::Read(quinn::ReadError::Reset(code))) => {
                SubscriptionEvent::End(Some(ErrorBody {
                    code: u16::try_from(code.into_inner()).unwrap_or(u16::MAX),
                    message: "the broker ended this delivery stream".into(),
                }))
            }
            Err(e) => SubscriptionEvent::Failed(e.to_string()),
        };
        let last = !matches!(event, SubscriptionEvent::Messages { .. });
        if tx.send(event).await.is_err() {
            let _ = reader.stream_mut().stop(0u32.into());
            return;
        }
        if last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn host_part_of_server_addresses() {
        assert_eq!(host_of("127.0.0.1:4433"), "127.0.0.1");
        assert_eq!(host_of("[::1]:4433"), "::1");
        assert_eq!(host_of("broker.example.com:4433"), "broker.example.com");
        assert_eq!(host_of("localhost"), "localhost");
    }
}
