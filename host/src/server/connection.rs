//! One client connection: the Hello handshake, then the control stream's
//! requests, each answered by id. Publishes are appended in arrival order
//! and acked concurrently; other requests run as tasks of their own, at
//! most `limits.max_in_flight_requests` at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sluice_client::wire::{FrameReader, WireError};
use sluice_proto::{
    frame, request_id_of, ClientFrame, CodecError, ErrorBody, ErrorCode, Request, RequestBody,
    Response, ResponseBody, ServerFrame, Welcome, PROTOCOL_VERSION,
};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use rustls::pki_types::CertificateDer;

use super::{delivery, Shared};
use crate::auth::{authorize, Action, AdminRight, Denied, Principal};
use crate::broker::{BrokerError, DeliverySource, PublishBatch};
use crate::sync::lock;

/// How long a finished control stream may take to reach the client before
/// the connection is closed anyway.
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// How a connection ends, and what the client is told.
enum Close {
    /// The client finished its control stream or closed the connection.
    Client,
    /// The broker is shutting down.
    Shutdown,
    /// The client broke the protocol: an error frame and a close with its code.
    Refused(ErrorBody),
    /// The same, already logged (at a rate limit).
    RefusedQuietly(ErrorBody),
}

/// Serves one incoming connection until it ends.
pub(crate) async fn handle(incoming: quinn::Incoming, shared: Arc<Shared>) {
    let peer = incoming.remote_address();
    let span = tracing::info_span!("connection", %peer);
    async move {
        let timeout = shared.config.limits.handshake_timeout;
        let conn = match tokio::time::timeout(timeout, incoming).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                return;
            }
        };
        let alpn = conn
            .handshake_data()
            .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|d| d.protocol);
        if alpn.as_deref() != Some(sluice_proto::ALPN) {
            close_with(
                &conn,
                &ErrorBody::new(ErrorCode::ProtocolViolation, "ALPN sluice/1 is required"),
            );
            return;
        }
        let Ok(_slot) = shared.connection_slots.clone().try_acquire_owned() else {
            let error = ErrorBody::new(
                ErrorCode::LimitExceeded,
                format!(
                    "too many connections (limits.max_connections = {})",
                    shared.config.limits.max_connections
                ),
            );
            if let Some(held) = shared.auth.log_limit.allow() {
                tracing::warn!(held_back = held, "{}", error.message);
            }
            shared.broker.metrics().connection_refused();
            shared.broker.metrics().limit_hit("max_connections");
            close_with(&conn, &error);
            return;
        };
        let _counted = shared.broker.metrics().connection();
        serve(conn, &shared).await;
    }
    .instrument(span)
    .await
}

fn close_with(conn: &quinn::Connection, error: &ErrorBody) {
    conn.close(u32::from(error.code).into(), error.message.as_bytes());
}

async fn serve(conn: quinn::Connection, shared: &Arc<Shared>) {
    let limits = &shared.config.limits;
    let max_frame = limits.max_frame_bytes;
    let handshake = async {
        let (send, recv) = conn.accept_bi().await.ok()?;
        let mut reader = FrameReader::new(recv, max_frame);
        let first = reader.next_body().await;
        Some((send, reader, first))
    };
    let (send, mut reader, first) =
        match tokio::time::timeout(limits.handshake_timeout, handshake).await {
            Ok(Some(x)) => x,
            Ok(None) => return,
            Err(_) => {
                tracing::info!("no Hello within the handshake timeout; closing");
                close_with(
                    &conn,
                    &ErrorBody::new(
                        ErrorCode::HandshakeRequired,
                        format!(
                            "no Hello within {:?} (limits.handshake_timeout)",
                            limits.handshake_timeout
                        ),
                    ),
                );
                return;
            }
        };
    let (writer, queue) = mpsc::channel::<Bytes>(limits.max_in_flight_requests + 16);
    let writer_task = tokio::spawn(write_control(send, queue));

    let hello = match first {
        Ok(Some(body)) => match frame::decode_body::<ClientFrame>(&body) {
            Ok(ClientFrame::Hello(hello)) => Ok(hello),
            Ok(ClientFrame::Request(_)) => Err(ErrorBody::new(
                ErrorCode::HandshakeRequired,
                "the first frame must be Hello",
            )),
            Err(e) => Err(ErrorBody::new(
                ErrorCode::MalformedFrame,
                format!("expected Hello: {e}"),
            )),
        },
        Ok(None) => Err(ErrorBody::new(
            ErrorCode::HandshakeRequired,
            "control stream ended before Hello",
        )),
        Err(e) => Err(wire_error_body(&e)),
    };
    let outcome = match hello {
        Ok(hello) if hello.version != PROTOCOL_VERSION => Close::Refused(ErrorBody::new(
            ErrorCode::UnsupportedVersion,
            format!(
                "client speaks protocol version {}, this broker {}",
                hello.version, PROTOCOL_VERSION
            ),
        )),
        Ok(hello) => match admit(&conn, shared, &hello).await {
            Err(error) => Close::RefusedQuietly(error),
            Ok((principal, _slot)) => {
                tracing::info!(client = %hello.client_name, principal = %principal.name, "client connected");
                // The features of the Hello this broker knows, echoed.
                let features: Vec<String> = hello
                    .features
                    .iter()
                    .filter(|f| {
                        [
                            sluice_proto::FEATURE_COMPACT_DELIVERY,
                            sluice_proto::FEATURE_COMPACT_PUBLISH,
                        ]
                        .contains(&f.as_str())
                    })
                    .cloned()
                    .collect();
                let compact = features
                    .iter()
                    .any(|f| f == sluice_proto::FEATURE_COMPACT_DELIVERY);
                let welcome = ServerFrame::Welcome(Welcome {
                    version: PROTOCOL_VERSION,
                    server: format!("sluice/{}", env!("CARGO_PKG_VERSION")),
                    max_frame_bytes: max_frame,
                    features,
                });
                let sent = match frame::encode(&welcome, max_frame) {
                    Ok(bytes) => writer.send(bytes).await.is_ok(),
                    Err(_) => false,
                };
                if sent {
                    Session::new(
                        conn.clone(),
                        shared.clone(),
                        writer.clone(),
                        hello.client_name.clone(),
                        principal,
                        compact,
                    )
                    .run(&mut reader)
                    .await
                } else {
                    Close::Client
                }
            }
        },
        Err(error) => Close::Refused(error),
    };

    // Tell the client why, then close.
    let close = match outcome {
        Close::Client => None,
        Close::Shutdown => Some(ErrorBody::new(
            ErrorCode::ShuttingDown,
            "broker is shutting down",
        )),
        Close::Refused(error) => {
            tracing::info!(code = error.code, reason = %error.message, "refusing client");
            Some(error)
        }
        Close::RefusedQuietly(error) => Some(error),
    };
    if let Some(error) = &close {
        // Requests the client sent but the broker never read fail with this.
        if let Ok(bytes) = frame::encode(&ServerFrame::Error(error.clone()), max_frame) {
            let _ = writer.send(bytes).await;
        }
    }
    drop(writer);
    let _ = writer_task.await;
    match close {
        Some(error) => close_with(&conn, &error),
        None => conn.close(0u32.into(), b"bye"),
    }
    tracing::debug!("connection closed");
}

/// Authenticates the client of `hello` and takes a connection slot of its
/// principal; refusals are counted and logged at a rate limit.
async fn admit(
    conn: &quinn::Connection,
    shared: &Shared,
    hello: &sluice_proto::Hello,
) -> Result<(Arc<Principal>, crate::auth::PrincipalSlot), ErrorBody> {
    let auth = &shared.auth;
    let metrics = shared.broker.metrics();
    let certs = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok());
    let principal = match auth
        .authenticate(hello.token.as_deref(), certs.as_deref().map(Vec::as_slice))
        .await
    {
        Ok(principal) => principal,
        Err(failure) => {
            metrics.auth_failed(failure.reason);
            if let Some(held) = auth.log_limit.allow() {
                tracing::warn!(client = %hello.client_name, reason = failure.reason, held_back = held, "refusing unauthenticated client: {}", failure.message);
            }
            return Err(failure.to_body());
        }
    };
    match auth.open_connection(&principal) {
        Ok(slot) => Ok((principal, slot)),
        Err(message) => {
            metrics.limit_hit("max_connections_per_principal");
            if let Some(held) = auth.log_limit.allow() {
                tracing::warn!(principal = %principal.name, held_back = held, "refusing connection: {message}");
            }
            Err(ErrorBody::new(ErrorCode::LimitExceeded, message))
        }
    }
}

fn wire_error_body(e: &WireError) -> ErrorBody {
    match e {
        WireError::Codec(CodecError::TooLarge { len, max }) => ErrorBody::new(
            ErrorCode::FrameTooLarge,
            format!(
                "frame of {len} bytes is over the limit of {max} bytes (limits.max_frame_bytes)"
            ),
        ),
        WireError::Codec(other) => ErrorBody::new(ErrorCode::MalformedFrame, other.to_string()),
        WireError::Read(other) => ErrorBody::new(ErrorCode::MalformedFrame, other.to_string()),
    }
}

/// Writes queued frames to the control stream, coalescing what is queued,
/// and finishes the stream when every sender is gone.
async fn write_control(mut send: quinn::SendStream, mut queue: mpsc::Receiver<Bytes>) {
    let mut batch = Vec::with_capacity(64);
    while queue.recv_many(&mut batch, 64).await > 0 {
        if send.write_all_chunks(&mut batch).await.is_err() {
            return;
        }
        batch.clear();
    }
    if send.finish().is_ok() {
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, send.stopped()).await;
    }
}

/// A delivery stream of the connection: what it is and how to end it.
struct Stream {
    consumer: bool,
    cancel: CancellationToken,
    /// Tells this stream from a later one that re-uses its id.
    marker: Arc<()>,
}

/// The state of one connection after its handshake.
struct Session {
    conn: quinn::Connection,
    shared: Arc<Shared>,
    writer: mpsc::Sender<Bytes>,
    in_flight: Arc<Semaphore>,
    requests: TaskTracker,
    deliveries: TaskTracker,
    /// Cancelled when the connection ends: ends every subscription.
    closing: CancellationToken,
    subscriptions: Arc<Mutex<HashMap<u64, Stream>>>,
    client_name: String,
    /// Who the client authenticated as.
    principal: Arc<Principal>,
    /// The client asked for compact delivery frames.
    compact: bool,
}

impl Session {
    fn new(
        conn: quinn::Connection,
        shared: Arc<Shared>,
        writer: mpsc::Sender<Bytes>,
        client_name: String,
        principal: Arc<Principal>,
        compact: bool,
    ) -> Self {
        let in_flight = Arc::new(Semaphore::new(shared.config.limits.max_in_flight_requests));
        Session {
            conn,
            shared,
            writer,
            in_flight,
            requests: TaskTracker::new(),
            deliveries: TaskTracker::new(),
            closing: CancellationToken::new(),
            subscriptions: Arc::new(Mutex::new(HashMap::new())),
            client_name,
            principal,
            compact,
        }
    }

    async fn run(self, reader: &mut FrameReader) -> Close {
        let shutdown = self.shared.shutdown.clone();
        let outcome = loop {
            let permit = tokio::select! {
                permit = self.in_flight.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break Close::Client,
                },
                () = shutdown.cancelled() => break Close::Shutdown,
            };
            let body = tokio::select! {
                body = reader.next_body() => body,
                () = shutdown.cancelled() => break Close::Shutdown,
            };
            match body {
                Ok(Some(body)) => match frame::decode_body::<ClientFrame>(&body) {
                    Ok(ClientFrame::Request(request)) => self.dispatch(request, permit).await,
                    Ok(ClientFrame::Hello(_)) => {
                        break Close::Refused(ErrorBody::new(
                            ErrorCode::ProtocolViolation,
                            "Hello sent twice",
                        ))
                    }
                    Err(e) => match request_id_of(&body) {
                        Some(id) => {
                            let error = ErrorBody::new(
                                ErrorCode::UnknownRequest,
                                format!("unknown or malformed request: {e}"),
                            );
                            self.respond(id, Err(error)).await;
                        }
                        None => {
                            break Close::Refused(ErrorBody::new(
                                ErrorCode::MalformedFrame,
                                e.to_string(),
                            ))
                        }
                    },
                },
                Ok(None) => break Close::Client,
                Err(WireError::Read(e)) => {
                    tracing::debug!(error = %e, "control stream lost");
                    break Close::Client;
                }
                Err(e) => break Close::Refused(wire_error_body(&e)),
            }
        };
        // Requests already read are answered (publishes stored and acked)
        // before the connection closes.
        self.requests.close();
        self.requests.wait().await;
        self.closing.cancel();
        self.deliveries.close();
        self.deliveries.wait().await;
        outcome
    }

    async fn respond(&self, id: u64, result: Result<ResponseBody, ErrorBody>) {
        respond(
            &self.writer,
            self.shared.config.limits.max_frame_bytes,
            id,
            result,
        )
        .await;
    }

    /// Runs a request as a task of its own and answers it when done.
    fn spawn_request<F>(&self, permit: tokio::sync::OwnedSemaphorePermit, id: u64, work: F)
    where
        F: std::future::Future<Output = Result<ResponseBody, BrokerError>> + Send + 'static,
    {
        let writer = self.writer.clone();
        let max = self.shared.config.limits.max_frame_bytes;
        self.requests.spawn(async move {
            let result = work.await.map_err(|e| e.to_body());
            respond(&writer, max, id, result).await;
            drop(permit);
        });
    }

    async fn dispatch(&self, request: Request, permit: tokio::sync::OwnedSemaphorePermit) {
        let id = request.id;
        let broker = &self.shared.broker;
        match request.body {
            // Awaited here, before the next frame is read, so a connection's
            // publishes are stored in the order they were sent.
            RequestBody::Publish(publish) => {
                let received = std::time::Instant::now();
                let batch = PublishBatch::from_messages(publish.messages);
                let pending = self.publish(batch).await;
                self.answer_publish(id, permit, received, pending, ResponseBody::Published)
                    .await;
            }
            RequestBody::PublishCompact(publish) => {
                let received = std::time::Instant::now();
                let batch = PublishBatch::from_runs(publish.runs);
                let pending = self.publish(batch).await;
                self.answer_publish(id, permit, received, pending, |ack| {
                    ResponseBody::PublishedCompact(sluice_proto::CompactAck::from_ack(ack))
                })
                .await;
            }
            RequestBody::Ping => self.respond(id, Ok(ResponseBody::Pong)).await,
            RequestBody::Subscribe(subscribe) => {
                let result = self.subscribe(subscribe).await.map_err(|e| e.to_body());
                self.respond(id, result).await;
            }
            RequestBody::Unsubscribe { subscription } => {
                let stream = lock(&self.subscriptions).remove(&subscription);
                let result = match stream {
                    Some(stream) => {
                        stream.cancel.cancel();
                        Ok(ResponseBody::Unsubscribed)
                    }
                    None => Err(ErrorBody::new(
                        ErrorCode::UnknownSubscription,
                        format!("no subscription {subscription} on this connection"),
                    )),
                };
                self.respond(id, result).await;
            }
            RequestBody::Fetch(fetch) => {
                if let Err(e) = self.check_subscribe(&fetch.topic) {
                    return self.respond(id, Err(e.to_body())).await;
                }
                let broker = broker.clone();
                let writer = self.writer.clone();
                let max = self.shared.config.limits.max_frame_bytes;
                self.requests.spawn(async move {
                    let result = broker
                        .fetch(
                            &fetch.topic,
                            fetch.from,
                            fetch.max_messages,
                            fetch.max_bytes.min(max / 2),
                        )
                        .await
                        .map(ResponseBody::Fetched)
                        .map_err(|e| e.to_body());
                    respond(&writer, max, id, result).await;
                    drop(permit);
                });
            }
            RequestBody::CreateTopic(create) => {
                if let Err(e) = self.check_admin(AdminRight::Topics, "create topics") {
                    return self.respond(id, Err(e.to_body())).await;
                }
                let broker = broker.clone();
                self.spawn_request(permit, id, async move {
                    broker
                        .create_topic(&create)
                        .await
                        .map(ResponseBody::TopicCreated)
                });
            }
            RequestBody::DeleteTopic { name } => {
                if let Err(e) = self.check_admin(AdminRight::Topics, "delete topics") {
                    return self.respond(id, Err(e.to_body())).await;
                }
                let broker = broker.clone();
                let writer = self.writer.clone();
                let max = self.shared.config.limits.max_frame_bytes;
                self.requests.spawn(async move {
                    let result = broker
                        .delete_topic(&name)
                        .await
                        .map(|()| ResponseBody::TopicDeleted)
                        .map_err(|e| e.to_body());
                    respond(&writer, max, id, result).await;
                    drop(permit);
                });
            }
            RequestBody::ListTopics => {
                let mut topics = broker.list_topics().await;
                topics.retain(|t| self.may_see_topic(&t.name));
                self.respond(id, Ok(ResponseBody::Topics(topics))).await
            }
            RequestBody::ListPlugins => {
                let result = self
                    .check_admin(AdminRight::Plugins, "see plugin status")
                    .map(|()| ResponseBody::Plugins(broker.plugin_status()))
                    .map_err(|e| e.to_body());
                self.respond(id, result).await
            }
            RequestBody::Consume(consume) => {
                let result = self.consume(consume).await.map_err(|e| e.to_body());
                self.respond(id, result).await;
            }
            RequestBody::Settle(settle) => {
                if let Err(e) = self.check_settle(&settle.topic) {
                    return self.respond(id, Err(e.to_body())).await;
                }
                // Settlements are answered once durable in the group's
                // journal; pipelined acks share one journal write.
                let broker = broker.clone();
                self.spawn_request(permit, id, async move {
                    broker.settle(settle).await.map(|()| ResponseBody::Settled)
                });
            }
            RequestBody::SettleBatch(batch) => {
                let checked = self.check_batch(batch.items.len()).and_then(|()| {
                    batch
                        .items
                        .iter()
                        .try_for_each(|item| self.check_settle(&item.topic))
                });
                if let Err(e) = checked {
                    return self.respond(id, Err(e.to_body())).await;
                }
                let broker = broker.clone();
                self.spawn_request(permit, id, async move {
                    broker
                        .settle_batch(batch)
                        .await
                        .map(|errors| ResponseBody::SettledBatch { errors })
                });
            }
            RequestBody::ListGroups
            | RequestBody::GroupInfo { .. }
            | RequestBody::ResetGroup { .. }
                if self
                    .check_admin(AdminRight::Groups, "administer consumer groups")
                    .is_err() =>
            {
                let e = BrokerError::Forbidden(format!(
                    "principal {:?} may not administer consumer groups (needs admin right \"groups\")",
                    self.principal.name
                ));
                self.respond(id, Err(e.to_body())).await
            }
            RequestBody::ListGroups => {
                let broker = broker.clone();
                self.spawn_request(permit, id, async move {
                    Ok(ResponseBody::Groups(broker.list_groups().await))
                });
            }
            RequestBody::GroupInfo { name } => {
                let broker = broker.clone();
                self.spawn_request(permit, id, async move {
                    broker.group_info(&name).await.map(ResponseBody::GroupInfo)
                });
            }
            RequestBody::ResetGroup { name, to } => {
                let broker = broker.clone();
                self.spawn_request(permit, id, async move {
                    broker
                        .reset_group(&name, to)
                        .await
                        .map(ResponseBody::GroupInfo)
                });
            }
            RequestBody::TopicInfo { name } => {
                if let Err(e) = self.authorize(Action::Describe, &name) {
                    return self.respond(id, Err(e.to_body())).await;
                }
                let broker = broker.clone();
                self.spawn_request(permit, id, async move {
                    broker.topic_info(&name).await.map(ResponseBody::TopicInfo)
                });
            }
        }
    }

    /// Answers a publish once it is stored (on its own task, so the read
    /// loop goes on with the next frame) and records its latency.
    async fn answer_publish(
        &self,
        id: u64,
        permit: tokio::sync::OwnedSemaphorePermit,
        received: std::time::Instant,
        pending: Result<crate::broker::PendingPublish, BrokerError>,
        wrap: impl FnOnce(sluice_proto::PublishAck) -> ResponseBody + Send + 'static,
    ) {
        let metrics = self.shared.broker.metrics().clone();
        match pending {
            Ok(pending) => {
                let writer = self.writer.clone();
                let max = self.shared.config.limits.max_frame_bytes;
                self.requests.spawn(async move {
                    let result = pending.wait().await.map(wrap).map_err(|e| e.to_body());
                    metrics.published(received.elapsed(), result.is_ok());
                    respond(&writer, max, id, result).await;
                    drop(permit);
                });
            }
            Err(e) => {
                metrics.published(received.elapsed(), false);
                self.respond(id, Err(e.to_body())).await
            }
        }
    }

    /// Counts and logs (at a rate limit) a refused request; the error says
    /// who may not do what.
    fn deny(&self, denied: Denied) -> BrokerError {
        self.shared.broker.metrics().denied(denied.action.label());
        let message = denied.to_string();
        if let Some(held) = self.shared.auth.log_limit.allow() {
            tracing::warn!(principal = %self.principal.name, action = denied.action.label(), held_back = held, "{message}");
        }
        BrokerError::Forbidden(message)
    }

    /// [`authorize`], counted and logged when refused.
    fn authorize(&self, action: Action, target: &str) -> Result<(), BrokerError> {
        authorize(&self.principal, action, target).map_err(|denied| self.deny(denied))
    }

    /// A publish checked against the batch limit and the publisher's
    /// rights on every topic, then handed to the broker.
    async fn publish(
        &self,
        batch: Result<PublishBatch, BrokerError>,
    ) -> Result<crate::broker::PendingPublish, BrokerError> {
        let batch = batch?;
        self.check_batch(batch.len())?;
        batch
            .topics()
            .try_for_each(|topic| self.authorize(Action::Publish, topic))?;
        self.shared.broker.publish(batch, &self.principal).await
    }

    fn check_subscribe(&self, pattern: &str) -> Result<(), BrokerError> {
        if let Err(reason) = sluice_proto::Pattern::parse(pattern) {
            return Err(BrokerError::InvalidPattern {
                pattern: pattern.to_owned(),
                reason,
            });
        }
        self.authorize(Action::Subscribe, pattern)
    }

    /// Settling needs read rights on the message's topic (a bad name is
    /// left to the broker, which answers it per item).
    fn check_settle(&self, topic: &str) -> Result<(), BrokerError> {
        self.authorize(Action::Settle, topic)
    }

    fn check_admin(&self, right: AdminRight, what: &str) -> Result<(), BrokerError> {
        self.authorize(Action::Admin(right), what)
    }

    /// Topic admins see every topic; others the topics they may publish to
    /// or read.
    fn may_see_topic(&self, name: &str) -> bool {
        authorize(&self.principal, Action::Describe, name).is_ok()
    }

    fn check_batch(&self, count: usize) -> Result<(), BrokerError> {
        let limit = self.shared.config.limits.max_batch_messages;
        if count > limit {
            self.shared.broker.metrics().limit_hit("max_batch_messages");
            return Err(BrokerError::LimitExceeded(format!(
                "a batch of {count} messages is over the limit of {limit} (limits.max_batch_messages)"
            )));
        }
        Ok(())
    }

    /// Checks the per-connection limit of the kind and that the id is free.
    fn check_stream_slot(&self, id: u64, consumer: bool) -> Result<(), BrokerError> {
        let subscriptions = lock(&self.subscriptions);
        let limits = &self.shared.config.limits;
        let (limit, name, what) = if consumer {
            (
                limits.max_consumers_per_connection,
                "max_consumers_per_connection",
                "group consumers",
            )
        } else {
            (
                limits.max_subscriptions_per_connection,
                "max_subscriptions_per_connection",
                "subscriptions",
            )
        };
        let open = subscriptions
            .values()
            .filter(|s| s.consumer == consumer)
            .count();
        if open >= limit {
            self.shared.broker.metrics().limit_hit(name);
            return Err(BrokerError::LimitExceeded(format!(
                "this connection has {open} {what} open, the most allowed (limits.{name} = {limit})"
            )));
        }
        if subscriptions.contains_key(&id) {
            return Err(BrokerError::SubscriptionExists(id));
        }
        Ok(())
    }

    /// Starts the delivery stream of a subscription or consumer.
    fn start_stream<S: DeliverySource>(&self, id: u64, source: S, consumer: bool) {
        let cancel = self.closing.child_token();
        let marker = Arc::new(());
        lock(&self.subscriptions).insert(
            id,
            Stream {
                consumer,
                cancel: cancel.clone(),
                marker: marker.clone(),
            },
        );
        let registry = self.subscriptions.clone();
        let conn = self.conn.clone();
        let shutdown = self.shared.shutdown.clone();
        let max = self.shared.config.limits.max_frame_bytes;
        let metrics = self.shared.broker.metrics().clone();
        let layout = if self.compact {
            delivery::Layout::Compact
        } else {
            delivery::Layout::Named
        };
        tracing::debug!(subscription = id, source = %source.describe(), "delivery stream starting");
        self.deliveries.spawn(
            async move {
                let settings = delivery::StreamSettings {
                    max_frame_bytes: max,
                    layout,
                    metrics,
                };
                delivery::run(conn, id, source, cancel, shutdown, settings).await;
                // Unless the id was unsubscribed and taken again meanwhile.
                let mut registry = lock(&registry);
                if registry
                    .get(&id)
                    .is_some_and(|s| Arc::ptr_eq(&s.marker, &marker))
                {
                    registry.remove(&id);
                }
            }
            .in_current_span(),
        );
    }

    async fn subscribe(
        &self,
        request: sluice_proto::Subscribe,
    ) -> Result<ResponseBody, BrokerError> {
        self.check_subscribe(&request.pattern)?;
        self.check_stream_slot(request.subscription, false)?;
        let subscription = self
            .shared
            .broker
            .subscribe(&request.pattern, request.from, request.plugin.as_ref())
            .await?;
        self.start_stream(request.subscription, subscription, false);
        Ok(ResponseBody::Subscribed {
            subscription: request.subscription,
        })
    }

    async fn consume(&self, request: sluice_proto::Consume) -> Result<ResponseBody, BrokerError> {
        self.check_subscribe(&request.pattern)?;
        self.check_stream_slot(request.consumer, true)?;
        let id = request.consumer;
        let consumer = self
            .shared
            .broker
            .consume(request, &self.client_name)
            .await?;
        self.start_stream(id, consumer, true);
        Ok(ResponseBody::Consuming { consumer: id })
    }
}

async fn respond(
    writer: &mpsc::Sender<Bytes>,
    max_frame: u32,
    id: u64,
    result: Result<ResponseBody, ErrorBody>,
) {
    // Responses may carry a message that filled a whole publish frame (a
    // fetch), plus its envelope: allow the same slack as deliveries.
    let max_frame = max_frame.saturating_add(super::OUTGOING_SLACK_BYTES);
    let frame = match frame::encode(&ServerFrame::Response(Response { id, result }), max_frame) {
        Ok(frame) => frame,
        Err(e) => {
            let error = ErrorBody::new(
                ErrorCode::Internal,
                format!("response could not be encoded: {e}"),
            );
            match frame::encode(
                &ServerFrame::Response(Response {
                    id,
                    result: Err(error),
                }),
                max_frame,
            ) {
                Ok(frame) => frame,
                Err(_) => return,
            }
        }
    };
    // A send error means the connection is gone; nobody is left to tell.
    let _ = writer.send(frame).await;
}
